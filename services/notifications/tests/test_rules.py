"""The entities' rules and the money format, without any server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from notifications.messages import format_money, order_cancelled
from notifications.models import Contact, Notification

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def pending() -> Notification:
    return Notification.pending(
        kind="welcome",
        user_id=uuid.uuid4(),
        recipient="ada@example.com",
        subject="Welcome to fastmicro",
        body="Hello",
        event_id=uuid.uuid4(),
        now=NOW,
    )


def test_a_new_notification_is_pending_and_due_at_once() -> None:
    notification = pending()
    assert (notification.status, notification.attempts, notification.next_attempt_at) == ("pending", 0, NOW)
    assert notification.sent_at is None
    assert notification.message_id == f"<{notification.id}@notifications.fastmicro>"


def test_each_failed_attempt_waits_for_its_own_delay_then_the_last_one_fails() -> None:
    notification = pending()
    notification.mark_failed_attempt("refused", NOW, [5, 30])
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification.next_attempt_at == NOW + timedelta(seconds=5)
    later = NOW + timedelta(seconds=5)
    notification.mark_failed_attempt("refused again", later, [5, 30])
    assert (notification.status, notification.attempts) == ("pending", 2)
    assert notification.next_attempt_at == later + timedelta(seconds=30)
    notification.mark_failed_attempt("x" * 600, later, [5, 30])
    assert (notification.status, notification.attempts) == ("failed", 3)
    assert notification.last_error == "x" * 500
    assert notification.sent_at is None


def test_without_retry_delays_one_failure_is_final() -> None:
    notification = pending()
    notification.mark_failed_attempt("refused", NOW, [])
    assert (notification.status, notification.attempts) == ("failed", 1)


def test_sent_and_rejected_count_their_attempt() -> None:
    sent, rejected = pending(), pending()
    sent.mark_failed_attempt("refused", NOW, [1])
    sent.mark_sent(NOW + timedelta(seconds=1))
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 2, NOW + timedelta(seconds=1))
    rejected.mark_rejected("550 no such mailbox")
    assert (rejected.status, rejected.attempts, rejected.last_error) == ("failed", 1, "550 no such mailbox")


def test_a_contact_keeps_newer_details_and_never_comes_back_once_erased() -> None:
    contact = Contact(user_id=uuid.uuid4(), updated_at=NOW)
    contact.change(email="new@example.com", name="New", now=NOW)
    contact.introduce(email="old@example.com", name="Old", now=NOW)  # a late UserCreated
    assert (contact.email, contact.name, contact.address) == ("new@example.com", "New", "new@example.com")

    contact.erase(NOW)
    contact.erase(NOW + timedelta(hours=1))
    assert (contact.email, contact.name, contact.address, contact.erased_at) == (None, None, None, NOW)
    contact.change(email="back@example.com", name="Back", now=NOW)
    contact.introduce(email="back@example.com", name="Back", now=NOW)
    assert (contact.email, contact.name, contact.is_erased) == (None, None, True)


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (3099, "EUR", "30.99 EUR"),
        (5, "usd", "0.05 USD"),
        (0, "USD", "0.00 USD"),
        (123456789, "USD", "1,234,567.89 USD"),
        (1234, "JPY", "1,234 JPY"),
        (1234, "KWD", "1.234 KWD"),
    ],
)
def test_money_is_shown_in_the_currency_s_own_units(minor: int, currency: str, shown: str) -> None:
    assert format_money(minor, currency) == shown


def test_a_cancellation_says_why() -> None:
    order_id = uuid.uuid4()
    message = order_cancelled("Ada", order_id, "user_deleted")
    assert message.subject == f"Your order {order_id.hex[:8]} is cancelled"
    assert "because your account was deleted" in message.body
    assert "Ada" not in message.subject


def test_a_lease_holds_until_the_row_is_settled_or_taken_over() -> None:
    notification = pending()
    until = NOW + timedelta(seconds=120)
    notification.lease(until)
    assert notification.next_attempt_at == until
    assert notification.holds_lease(until)
    assert not notification.holds_lease(until + timedelta(microseconds=1))  # another sender's lease
    notification.release(NOW + timedelta(seconds=1))
    assert not notification.holds_lease(until)
    assert notification.next_attempt_at == NOW + timedelta(seconds=1)

    sent = pending()
    sent.lease(until)
    sent.mark_sent(NOW)
    assert not sent.holds_lease(until)  # settled: no later outcome may overwrite it
