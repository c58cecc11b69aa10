"""The notifications service's own settings, read once from the environment.

SMTP: SHOPMESH_SMTP_HOST (default 127.0.0.1), SHOPMESH_SMTP_PORT (1025, Mailpit's),
SHOPMESH_SMTP_USERNAME / SHOPMESH_SMTP_PASSWORD (both or neither), SHOPMESH_SMTP_STARTTLS
(true/false, default false), SHOPMESH_SMTP_TIMEOUT_SECONDS (10), SHOPMESH_MAIL_FROM.
Sending: SHOPMESH_MAIL_POLL_SECONDS (how often the worker looks for due mails, 1),
SHOPMESH_MAIL_RETRY_INITIAL_SECONDS (1) doubling to SHOPMESH_MAIL_RETRY_MAX_SECONDS (60).
Streams: SHOPMESH_NOTIFICATIONS_STREAM_QUEUE (notifications a slow client may fall
behind before its stream is closed, 100), SHOPMESH_NOTIFICATIONS_TOKEN_CHECK_SECONDS
(how often an open stream checks its token's revocation, 1),
SHOPMESH_NOTIFICATIONS_MAX_STREAMS_PER_USER (streams one user may hold open on a
replica, 5: each holds a queue and a subscription, so their number is bounded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import ConfigError, EnvReader


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    timeout_seconds: float
    sender: str


@dataclass(frozen=True)
class MailRetry:
    poll_seconds: float
    initial_seconds: float
    max_seconds: float

    def delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt (1-based), doubling up to the maximum."""
        return float(min(self.max_seconds, self.initial_seconds * 2 ** max(0, min(attempts - 1, 30))))


@dataclass(frozen=True)
class StreamConfig:
    queue_size: int
    token_check_seconds: float
    max_per_user: int


@dataclass(frozen=True)
class NotificationsConfig:
    smtp: SmtpConfig
    retry: MailRetry
    stream: StreamConfig

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotificationsConfig:
        read = EnvReader(env)
        username = read.optional("SHOPMESH_SMTP_USERNAME")
        password = read.optional("SHOPMESH_SMTP_PASSWORD")
        if (username is None) != (password is None):
            raise ConfigError("SHOPMESH_SMTP_USERNAME and SHOPMESH_SMTP_PASSWORD go together")
        smtp = SmtpConfig(
            host=read.string("SHOPMESH_SMTP_HOST", "127.0.0.1"),
            port=read.integer("SHOPMESH_SMTP_PORT", 1025, minimum=1, maximum=65535),
            username=username,
            password=password,
            starttls=read.choice("SHOPMESH_SMTP_STARTTLS", "false", ("true", "false")) == "true",
            timeout_seconds=read.number("SHOPMESH_SMTP_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=300.0),
            sender=read.string("SHOPMESH_MAIL_FROM", "shopmesh <no-reply@shopmesh.example>"),
        )
        retry = MailRetry(
            poll_seconds=read.number("SHOPMESH_MAIL_POLL_SECONDS", 1.0, minimum=0.05, maximum=60.0),
            initial_seconds=read.number("SHOPMESH_MAIL_RETRY_INITIAL_SECONDS", 1.0, minimum=0.05, maximum=3600.0),
            max_seconds=read.number("SHOPMESH_MAIL_RETRY_MAX_SECONDS", 60.0, minimum=0.05, maximum=24 * 3600.0),
        )
        stream = StreamConfig(
            queue_size=read.integer("SHOPMESH_NOTIFICATIONS_STREAM_QUEUE", 100, minimum=1, maximum=100_000),
            token_check_seconds=read.number(
                "SHOPMESH_NOTIFICATIONS_TOKEN_CHECK_SECONDS", 1.0, minimum=0.05, maximum=60.0
            ),
            max_per_user=read.integer("SHOPMESH_NOTIFICATIONS_MAX_STREAMS_PER_USER", 5, minimum=1, maximum=1000),
        )
        return cls(smtp, retry, stream)
