"""SMTP: one connection per sending round, one email per notification."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from fastmicro.db import utcnow
from notifications.models import Notification
from notifications.settings import NotificationsSettings

#: Failures of the connection or of the server that a later attempt may not meet.
TRANSIENT_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


class MailServerUnavailable(RuntimeError):
    """The SMTP server could not be reached (or logged in to)."""


class Mailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout: float,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout = timeout
        self._starttls = starttls
        self._username = username
        self._password = password

    @classmethod
    def from_settings(cls, settings: NotificationsSettings) -> Mailer:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            timeout=settings.smtp_timeout,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        )

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[MailConnection]:
        """An open (and, if configured, upgraded and logged-in) SMTP connection; closed on exit."""
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            start_tls=self._starttls,
            username=self._username,
            password=self._password,
        )
        try:
            await smtp.connect()
        except TRANSIENT_ERRORS as error:
            raise MailServerUnavailable(f"{self._host}:{self._port}: {error}") from error
        try:
            yield MailConnection(smtp, self._sender)
        finally:
            if smtp.is_connected:
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await smtp.quit()
            smtp.close()


class MailConnection:
    def __init__(self, smtp: aiosmtplib.SMTP, sender: str) -> None:
        self._smtp = smtp
        self._sender = sender

    @property
    def is_open(self) -> bool:
        return self._smtp.is_connected

    async def send(self, notification: Notification) -> None:
        await self._smtp.send_message(compose(notification, self._sender))


def compose(notification: Notification, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = notification.recipient
    message["Subject"] = notification.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = notification.message_id
    message.set_content(notification.body)
    return message


def is_permanent(error: BaseException) -> bool:
    """True for a refusal no retry can change: an unusable address, or an SMTP 5xx for this message."""
    if isinstance(error, ValueError):  # the address cannot even be written in an envelope
        return True
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return False
