"""The mail worker: sends the mails the consumers queued, records each send, retries with backoff.

The consumer's transaction inserts a row into `outgoing_mails` (see feed.py);
this worker, on every replica, claims one due row at a time (FOR UPDATE SKIP
LOCKED, so replicas never send the same mail concurrently), sends it over SMTP
and marks it sent in the same transaction. Delivery is at-least-once: a crash
after the SMTP server accepted the mail but before the commit sends it again,
with the same Message-ID (derived from the event id). A sent row is never
claimed again, so a redelivered event (or a second replica) sends nothing more.

The recipient is the address notifications keeps from UserRegistered; for a
user it never saw, the users service's internal GetUserContact. While the SMTP
server (or the users service) cannot be reached the mail waits, its delay
doubling up to the configured maximum; a permanent refusal (an SMTP 5xx, or a
user that does not exist) gives it up (failed_at), logged without addresses.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, Counter

from shopmesh.user.v1 import user_service_pb2
from shopmesh_notifications import store
from shopmesh_notifications.config import MailRetry, SmtpConfig
from shopmesh_notifications.records import PendingMail
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.notifications.mail")
GET_USER_CONTACT = "/shopmesh.user.v1.UserService/GetUserContact"


class PermanentFailure(Exception):
    """Retrying cannot deliver this mail."""


class UsersDirectory:
    """Addresses of users notifications has not seen register: the users service's internal method."""

    def __init__(self, channel: aio.Channel) -> None:
        # A multicallable of the one method (the generated stub class is untyped).
        self._get_contact = channel.unary_unary(
            GET_USER_CONTACT,
            request_serializer=user_service_pb2.GetUserContactRequest.SerializeToString,
            response_deserializer=user_service_pb2.UserContact.FromString,
        )

    async def email_of(self, user_id: str) -> str:
        try:
            contact: user_service_pb2.UserContact = await self._get_contact(
                user_service_pb2.GetUserContactRequest(user_id=user_id)
            )
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise PermanentFailure("the user does not exist") from None
            raise ConnectionError(f"users GetUserContact: {error.code().name}") from None
        return contact.email


def build_message(mail: PendingMail, sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = mail.subject
    message["Message-ID"] = mail.message_id
    message["Date"] = email.utils.format_datetime(mail.created_at)
    message.set_content(mail.body)
    return message


def _classify(error: Exception) -> tuple[bool, str]:
    """(permanent?, what to record) for a failed send; never the addresses or the SMTP text."""
    if isinstance(error, PermanentFailure):
        return True, str(error)
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({refusal.code for refusal in error.recipients})
        return all(code >= 500 for code in codes), f"recipient refused ({codes})"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code >= 500, f"{type(error).__name__} {error.code}"
    return False, type(error).__name__


class MailMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "notification_mail_attempts_total",
            "Mail send attempts by outcome (sent, retry, failed).",
            ("outcome",),
            registry=registry,
        )


class MailWorker:
    """Run `run()` as a worker of the service (every replica may run one)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        smtp: SmtpConfig,
        retry: MailRetry,
        directory: UsersDirectory,
        registry: CollectorRegistry,
    ) -> None:
        self._pool = pool
        self._smtp = smtp
        self._retry = retry
        self._directory = directory
        self._metrics = MailMetrics(registry)

    async def run(self) -> None:
        await keep_running("mail worker", self._work, logger, initial_backoff=self._retry.poll_seconds)

    async def _work(self) -> None:
        while True:
            if not await self.send_next():
                await asyncio.sleep(self._retry.poll_seconds)

    async def send_next(self) -> bool:
        """Send (or reschedule) the next due mail; False when none is due."""
        async with self._pool.acquire() as connection, connection.transaction():
            mail = await store.claim_due_mail(connection)
            if mail is None:
                return False
            try:
                recipient = mail.recipient or await self._recipient(connection, mail.user_id)
                await self._send(build_message(mail, self._smtp.sender, recipient))
            except (OSError, TimeoutError, ConnectionError, aiosmtplib.SMTPException, PermanentFailure) as error:
                permanent, description = _classify(error)
                if permanent:
                    await store.mark_failed(connection, mail.message_id, description)
                    self._metrics.attempts.labels("failed").inc()
                    logger.warning("mail given up", extra={"message_id": mail.message_id, "error": description})
                else:
                    delay = self._retry.delay(mail.attempts + 1)
                    await store.mark_retry(connection, mail.message_id, description, delay)
                    self._metrics.attempts.labels("retry").inc()
                    logger.info(
                        "mail not sent; retrying",
                        extra={"message_id": mail.message_id, "error": description, "retry_in_s": delay},
                    )
                return True
            await store.mark_sent(connection, mail.message_id, recipient)
            self._metrics.attempts.labels("sent").inc()
            logger.info("mail sent", extra={"message_id": mail.message_id})
            return True

    async def _recipient(self, connection: asyncpg.Connection, user_id: str) -> str:
        contact = await store.find_contact(connection, user_id)
        if contact is not None:
            return contact.email
        return await self._directory.email_of(user_id)

    async def _send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self._smtp.host,
            port=self._smtp.port,
            username=self._smtp.username,
            password=self._smtp.password,
            start_tls=self._smtp.starttls,
            timeout=self._smtp.timeout_seconds,
        )
