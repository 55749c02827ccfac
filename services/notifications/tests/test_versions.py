"""OrderPlaced v1 and v2 on the bus at once: the consumer reads both, the v1 through its upcaster.

orders sends v2 now, but a v1 can still arrive: one queued before the switch, or one replayed from
the dead-letter queue. Each is mailed with the same total it would have had as a v2.
"""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.dlq import DeadLetter, DeadLetterQueues, find_dead_letters, replay_dead_letters
from fastmicro.letters import REASON_HEADER
from fastmicro.messaging import Broker
from fastmicro.testing import publish_event
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderLine, OrderPlaced, OrderPlacedV1
from notifications.settings import NotificationsSettings

from .helpers import Mail, SmtpSink, eventually_async, new_user, notification_rows, was_handled

pytestmark = pytest.mark.usefixtures("client")  # the session's app: its consumer and sender run


def patience(settings: NotificationsSettings) -> float:
    """How long the consumer may take to keep a promise here: all its retries, and a margin for a busy machine."""
    return sum(settings.consumer_retry_delays) + 10.0


def placed_v2(user_id: uuid.UUID, lines: tuple[OrderLine, ...], amount: str, currency: str) -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.uuid4(), user_id=user_id, items=lines, total=Money(amount=amount, currency=currency)
    )


def placed_v1(user_id: uuid.UUID, lines: tuple[OrderLine, ...], total: int, currency: str) -> OrderPlacedV1:
    """As orders sent it before it switched to v2."""
    return OrderPlacedV1(order_id=uuid.uuid4(), user_id=user_id, items=lines, total=total, currency=currency)


def mail_of(mails: list[Mail], order_id: uuid.UUID) -> str:
    [mail] = [mail for mail in mails if mail.message["Subject"] == f"Your order {order_id.hex[:8]} is placed"]
    return mail.body


async def test_a_v1_order_placed_between_v2_ones_is_mailed_with_its_own_total(
    test_broker: Broker, smtp_sink: SmtpSink, database: AsyncEngine, settings: NotificationsSettings
) -> None:
    user = new_user(name="Ada")
    await publish_event(test_broker, user)
    await smtp_sink.wait_for(user.email, within=patience(settings))  # the contact is known
    before = placed_v2(user.user_id, (OrderLine(sku="MUG-7", quantity=3, unit_price=850),), "25.50", "EUR")
    old = placed_v1(
        user.user_id,
        (OrderLine(sku="TEA-1", quantity=2, unit_price=1000), OrderLine(sku="CUP-2", quantity=1, unit_price=749)),
        2749,
        "JPY",
    )
    after = placed_v2(user.user_id, (OrderLine(sku="OIL-3", quantity=1, unit_price=1234),), "1.234", "KWD")

    envelopes = [await publish_event(test_broker, event) for event in (before, old, after)]  # in this order
    assert [envelope.version for envelope in envelopes] == [2, 1, 2]
    assert "currency" in envelopes[1].data  # the v1 shape on the wire: total in minor units, currency apart
    assert envelopes[1].data["total"] == 2749

    mails = await smtp_sink.wait_for(user.email, count=4, within=patience(settings))
    assert "Total: 25.50 EUR" in mail_of(mails, before.order_id)
    v1_mail = mail_of(mails, old.order_id)
    assert "2 x TEA-1 at 1,000 JPY = 2,000 JPY" in v1_mail  # the lines in the total's currency, as v2 says
    assert "1 x CUP-2 at 749 JPY = 749 JPY" in v1_mail
    assert "Total: 2,749 JPY" in v1_mail
    assert "Total: 1.234 KWD" in mail_of(mails, after.order_id)
    rows = await notification_rows(database, user.user_id)
    assert sorted(row["event_id"] for row in rows if row["kind"] == "order_placed") == sorted(
        envelope.id for envelope in envelopes
    )


async def test_a_v1_order_placed_replayed_from_the_dead_letter_queue_goes_through_the_upcaster(
    test_broker: Broker, smtp_sink: SmtpSink, database: AsyncEngine, settings: NotificationsSettings
) -> None:
    """A v1 that died before the switch (its contact was not known within the retries) is replayed after it."""
    queues = DeadLetterQueues(
        test_broker.topology.service_queue("notifications"),
        f"{test_broker.topology.service_queue('notifications')}.dead",
    )
    user = new_user(name="Grace")
    old = placed_v1(user.user_id, (OrderLine(sku="BOOK-001", quantity=2, unit_price=1250),), 2500, "EUR")
    envelope = await publish_event(test_broker, old)

    async def dead() -> DeadLetter | None:
        found = await find_dead_letters(test_broker, queues, str(envelope.id))
        return found[0] if found else None

    letter = await eventually_async(dead, within=patience(settings), every=0.2)
    assert letter.reason == "attempts exhausted"
    assert letter.headers[REASON_HEADER] == "attempts exhausted"
    assert json.loads(letter.body)["version"] == 1  # the dead letter keeps the v1 it was
    assert not await was_handled(database, envelope.id)

    await publish_event(test_broker, user)
    await smtp_sink.wait_for(user.email, within=patience(settings))  # now the contact is known
    replayed = await replay_dead_letters(test_broker, queues, [str(envelope.id)])
    assert ([letter.message_id for letter in replayed.done], replayed.missing) == ([str(envelope.id)], [])

    mails = await smtp_sink.wait_for(user.email, count=2, within=patience(settings))
    body = mail_of(mails, old.order_id)
    assert "2 x BOOK-001 at 12.50 EUR = 25.00 EUR" in body
    assert "Total: 25.00 EUR" in body
    assert await was_handled(database, envelope.id)
    [row] = [row for row in await notification_rows(database, user.user_id) if row["kind"] == "order_placed"]
    assert row["event_id"] == envelope.id
