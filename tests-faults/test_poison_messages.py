"""Scenario 7: poison and schema-invalid messages in the middle of a stream of good ones.

Promise: each bad message goes to `<ns>notifications.events.dead` at once (no retry), with the
reason in its headers; the good ones around it are each handled exactly once; nothing is lost.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fastmicro.consumer import ATTEMPT_HEADER, REASON_HEADER, ROUTING_KEY_HEADER
from fastmicro.testing import publish_event, publish_raw
from fault_stack import FaultStack, eventually
from figures import Figure, Record
from scenarios import consumed, dead_letters, mails_to, new_user, per_event, sent

GOOD = 50


def envelope(data: dict[str, Any], *, version: int = 1) -> tuple[str, bytes]:
    """A UserCreated envelope around `data` as it would travel; returns (message id, body)."""
    message_id = str(uuid.uuid4())
    body = {
        "id": message_id,
        "type": "UserCreated",
        "version": version,
        "source": "users",
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": None,
        "causation_id": None,
        "data": data,
    }
    return message_id, json.dumps(body).encode()


def bad_messages() -> dict[str, tuple[str, bytes]]:
    """The bad messages by what is wrong with them: (message id, body), each routed as users.UserCreated."""
    no_email_user, v99_user = uuid.uuid4(), uuid.uuid4()
    return {
        "unparseable": (str(uuid.uuid4()), b"{not json"),
        "no email": envelope({"user_id": str(no_email_user), "name": "No Email"}),
        "user_id not a uuid": envelope({"user_id": 12345, "email": "typed@example.com", "name": "Wrong Type"}),
        "unknown version": envelope(
            {"user_id": str(v99_user), "email": "v99@example.com", "name": "Future"}, version=99
        ),
    }


async def test_bad_messages_in_a_stream_are_dead_lettered_with_a_reason_and_the_rest_flow_on(
    stack: FaultStack, record: Record
) -> None:
    """Every bad message is dead-lettered on its first delivery with its reason; every good one is handled once."""
    bad = bad_messages()
    users = [new_user() for _ in range(GOOD)]
    every = GOOD // (len(bad) + 1)
    handled_before, duplicates_before = consumed("UserCreated", "handled"), consumed("UserCreated", "duplicate")
    good_ids: list[uuid.UUID] = []
    async with stack.app("notifications"):
        for n, user in enumerate(users):
            if n and n % every == 0 and n // every <= len(bad):  # a bad one after every `every` good ones
                message_id, body = list(bad.values())[n // every - 1]
                await publish_raw(stack.broker, "users.UserCreated", body, message_id=message_id)
            good_ids.append((await publish_event(stack.broker, user)).id)

        async def all_welcomed() -> bool:
            return await sent(stack, "welcome") >= GOOD

        delivered_in = await eventually(all_welcomed, within=30, what="every good user's welcome sent")
        dead = await dead_letters(stack, "notifications", expected=len(bad))

    reasons = {letter.message_id: letter.headers for letter in dead}
    expected_ids = {message_id for message_id, _ in bad.values()}
    assert set(reasons) == expected_ids, f"dead letters {reasons}"
    assert reasons[bad["unparseable"][0]][REASON_HEADER].startswith("unparseable envelope")
    assert reasons[bad["no email"][0]][REASON_HEADER].startswith("invalid UserCreated v1 data")
    assert "email" in reasons[bad["no email"][0]][REASON_HEADER]
    assert reasons[bad["user_id not a uuid"][0]][REASON_HEADER].startswith("invalid UserCreated v1 data")
    assert "user_id" in reasons[bad["user_id not a uuid"][0]][REASON_HEADER]
    assert reasons[bad["unknown version"][0]][REASON_HEADER] == "no handler for UserCreated v99"
    assert all(headers[ATTEMPT_HEADER] == 0 for headers in reasons.values())  # dead at once, never retried
    assert all(headers[ROUTING_KEY_HEADER] == "users.UserCreated" for headers in reasons.values())
    assert {letter.body for letter in dead} == {body for _, body in bad.values()}  # kept verbatim, for replay

    welcomes = await per_event(stack, "welcome")
    assert set(welcomes) == set(good_ids)  # one per good event, none for a bad one
    assert all(count == 1 for count in welcomes.values())
    assert await stack.scalar("notifications", "SELECT count(*) FROM contacts") == GOOD
    assert await stack.scalar("notifications", "SELECT count(*) FROM inbox") == GOOD  # bad ones never claimed
    mails = mails_to(stack, (user.email for user in users))
    assert len(mails) == GOOD
    assert len({m["Message-ID"] for m in mails}) == GOOD
    handled = int(consumed("UserCreated", "handled") - handled_before)
    assert handled == GOOD
    record(
        Figure(
            "7 poison messages in a stream",
            sent=GOOD + len(bad),
            delivered=len(welcomes),
            duplicates=int(consumed("UserCreated", "duplicate") - duplicates_before),
            lost=GOOD - len(welcomes),
            recovery_seconds=None,
            note=(
                f"{GOOD} good + {len(bad)} bad ({', '.join(bad)}); {len(dead)} dead-lettered at attempt 0 "
                f"with reasons; all good handled once in {delivered_in:.2f}s"
            ),
        )
    )
