"""Scenario 8: the SMTP server goes away (cut through a proxy in front of the mail sink).

Promise: notifications wait `pending`, retried with backoff, and go out once each when the
server is back within the retry budget; past the budget they end `failed`, never earlier.
"""

from __future__ import annotations

from typing import Any

from fastmicro.testing.plugin import ProxyFactory
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import consumed, count_by_status, mails_to, new_user, publish_all, sent

USERS = 20
#: Budget of the first part: 7 attempts over ~15 s, far more than the cut lasts.
PATIENT_DELAYS = [0.2, 0.5, 1.0, 2.0, 4.0, 8.0]
#: Budget of the second part: 3 attempts over ~0.3 s, less than the cut lasts.
SHORT_DELAYS = [0.1, 0.2]


async def welcome_rows(stack: FaultStack) -> list[dict[str, Any]]:
    rows = await stack.rows(
        "notifications", "SELECT id, status, attempts, last_error, sent_at FROM notifications WHERE kind = 'welcome'"
    )
    return [dict(row._mapping) for row in rows]


async def test_mail_waits_pending_while_smtp_is_down_and_goes_once_each_when_it_is_back(
    stack: FaultStack, tcp_proxy: ProxyFactory, record: Record
) -> None:
    """Pending with growing attempts and a last_error while cut; after restore all sent, one mail each."""
    smtp = await tcp_proxy(f"smtp://127.0.0.1:{stack.mail.port}")
    await smtp.cut()
    users = [new_user() for _ in range(USERS)]
    retried_before = consumed("UserCreated", "retried")
    async with stack.app("notifications", smtp_port=smtp.port, send_retry_delays=PATIENT_DELAYS):
        await publish_all(stack, users)
        during_cut: list[dict[str, Any]] = []

        async def all_retried() -> bool:
            nonlocal during_cut
            during_cut = await welcome_rows(stack)
            return len(during_cut) == USERS and all(row["attempts"] >= 2 for row in during_cut)

        await eventually(all_retried, within=20, what="every notification tried twice against the cut server")
        await smtp.restore()

        async def all_sent() -> bool:
            return await sent(stack, "welcome") == USERS

        recovery = await eventually(all_sent, within=20, what="every notification sent after restore")
        after = {row["id"]: row for row in await welcome_rows(stack)}
    # The sender has stopped: no mail can arrive after this point.

    assert all(row["status"] == "pending" for row in during_cut)
    assert all(row["sent_at"] is None for row in during_cut)
    assert all(str(row["last_error"]).startswith("mail server unavailable") for row in during_cut)
    assert all(row["attempts"] < len(PATIENT_DELAYS) + 1 for row in during_cut)  # still within the budget
    assert await count_by_status(stack, "welcome") == {"sent": USERS}
    for row in during_cut:  # each went on from where the cut left it: the attempts only grew
        assert after[row["id"]]["attempts"] > row["attempts"]
    mails = mails_to(stack, (user.email for user in users))
    assert len(mails) == USERS
    assert {m["Message-ID"] for m in mails} == {f"<{row_id}@notifications.fastmicro>" for row_id in after}
    assert consumed("UserCreated", "retried") == retried_before  # the consumer never noticed the SMTP outage
    assert smtp.connections_made > 0
    attempts = sorted(row["attempts"] for row in after.values())
    record(
        Figure(
            "8a SMTP down, back within the budget",
            sent=USERS,
            delivered=len(mails),
            duplicates=0,
            lost=USERS - len(mails),
            recovery_seconds=recovery,
            note=(
                f"{USERS} pending during cut (attempts {min(r['attempts'] for r in during_cut)}"
                f"-{max(r['attempts'] for r in during_cut)}, budget {len(PATIENT_DELAYS) + 1}); "
                f"sent at attempt {attempts[0]}-{attempts[-1]}, one mail each"
            ),
        )
    )


async def test_mail_fails_only_once_every_attempt_is_used(
    stack: FaultStack, tcp_proxy: ProxyFactory, record: Record
) -> None:
    """With the server cut past a short budget, a notification is `failed` only with len(delays)+1 attempts."""
    smtp = await tcp_proxy(f"smtp://127.0.0.1:{stack.mail.port}")
    await smtp.cut()
    users = [new_user() for _ in range(USERS)]
    budget = len(SHORT_DELAYS) + 1
    observations = 0
    early: list[dict[str, Any]] = []
    async with stack.app("notifications", smtp_port=smtp.port, send_retry_delays=SHORT_DELAYS):
        await publish_all(stack, users)

        async def all_failed() -> bool:
            nonlocal observations
            rows = await welcome_rows(stack)
            observations += 1
            early.extend(r for r in rows if r["status"] == "failed" and r["attempts"] != budget)
            early.extend(r for r in rows if r["status"] == "pending" and r["attempts"] >= budget)
            return len(rows) == USERS and all(row["status"] == "failed" for row in rows)

        gave_up = await eventually(all_failed, within=20, every=0.05, what="every notification failed")
        failed = await welcome_rows(stack)

        # The server comes back: a new notification goes out, the failed ones stay failed.
        await smtp.restore()
        late = new_user()
        await publish_all(stack, [late])

        async def late_sent() -> bool:
            return await sent(stack, "welcome") == 1

        await eventually(late_sent, within=20, what="a notification written after restore sent")
        after = await welcome_rows(stack)

    assert early == [], "a notification was failed before its last attempt, or tried past it"
    assert all(row["attempts"] == budget for row in failed)
    assert all(str(row["last_error"]).startswith("mail server unavailable") for row in failed)
    assert all(row["sent_at"] is None for row in failed)
    assert await count_by_status(stack, "welcome") == {"failed": USERS, "sent": 1}
    assert {row["id"]: row["attempts"] for row in after if row["status"] == "failed"} == {
        row["id"]: row["attempts"] for row in failed
    }
    assert mails_to(stack, (user.email for user in users)) == []
    assert len(mails_to(stack, [late.email])) == 1
    record(
        Figure(
            "8b SMTP down past the budget",
            sent=USERS,
            delivered=0,
            duplicates=0,
            lost=0,
            recovery_seconds=None,
            note=(
                f"all {USERS} failed after exactly {budget} attempts ({observations} looks, none early), "
                f"{gave_up:.2f}s; none re-sent after restore"
            ),
        )
    )
