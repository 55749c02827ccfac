"""SMTP: connections kept open between sending rounds, one email per notification."""

from __future__ import annotations

import contextlib
import email.policy
import functools
import time
from collections.abc import AsyncIterator
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from fastmicro.db import utcnow
from notifications.models import Notification
from notifications.settings import NotificationsSettings

#: How long an idle connection is kept for the next round: well inside the 5 minutes after which
#: RFC 5321 (4.5.3.2.7) lets a server drop an idle client.
IDLE_KEEP_SECONDS = 30.0

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
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []  # (when it was given back, the connection)

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
        """An open (and, if configured, upgraded and logged-in) SMTP connection.

        One left open by an earlier round is taken when there is one: a round then pays for no
        connect, greeting, EHLO or login. On a clean exit the connection is kept for the next
        round while it is open; after an error it is closed.
        """
        smtp = self._take_idle() or await self._open()
        clean = False
        try:
            yield MailConnection(smtp, self._sender)
            clean = True
        finally:
            if clean and smtp.is_connected:
                self._idle.append((time.monotonic(), smtp))
            else:
                await _quit(smtp)

    @property
    def idle_connections(self) -> int:
        """Connections kept for the next round that are still open."""
        return sum(smtp.is_connected for _, smtp in self._idle)

    async def close(self) -> None:
        """Say goodbye on every idle connection."""
        idle, self._idle = self._idle, []
        for _, smtp in idle:
            await _quit(smtp)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            since, smtp = self._idle.pop()  # the most recently used: the least likely to have timed out
            if smtp.is_connected and time.monotonic() - since < IDLE_KEEP_SECONDS:
                return smtp
            smtp.close()  # closed by the server meanwhile (seen as end of stream), or idle too long
        return None

    async def _open(self) -> aiosmtplib.SMTP:
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
        return smtp


async def _quit(smtp: aiosmtplib.SMTP) -> None:
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
    message["From"] = _from_header(sender)
    message["To"] = notification.recipient
    message["Subject"] = notification.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = notification.message_id
    message.set_content(notification.body)
    return message


@functools.lru_cache(maxsize=8)
def _from_header(sender: str) -> BaseHeader:
    """Parsed once: parsing an address header is a fifth of composing a message, and the sender never changes."""
    header: BaseHeader = email.policy.default.header_factory("From", sender)
    return header


def is_permanent(error: BaseException) -> bool:
    """True for a refusal no retry can change: an unusable address, or an SMTP 5xx for this message."""
    if isinstance(error, ValueError):  # the address cannot even be written in an envelope
        return True
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return False
