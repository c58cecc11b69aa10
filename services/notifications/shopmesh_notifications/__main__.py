"""Entry point: `python -m shopmesh_notifications` (settings from the environment).

Beyond the platform's settings: SMTP, mail retry and stream settings
(shopmesh_notifications.config).
"""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_notifications.config import NotificationsConfig
from shopmesh_notifications.consumers import notification_handlers
from shopmesh_notifications.feed import Feed
from shopmesh_notifications.hub import NotificationHub
from shopmesh_notifications.mailer import MailWorker, UsersDirectory
from shopmesh_notifications.servicer import NotificationServicer, binding
from shopmesh_platform.events.topics import ORDER_EVENTS, PAYMENT_EVENTS, USER_EVENTS
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    config = NotificationsConfig.from_env(env)
    runtime = Runtime.from_env("notifications", env)
    postgres = await runtime.postgres()
    feed = Feed(postgres.pool)
    hub = NotificationHub(
        postgres.config.dsn,
        feed,
        queue_size=config.stream.queue_size,
        max_streams_per_user=config.stream.max_per_user,
        registry=runtime.registry,
    )
    mail = MailWorker(
        postgres.pool, config.smtp, config.retry, UsersDirectory(runtime.channel("users")), runtime.registry
    )
    consumer = runtime.consumer("feed", notification_handlers(feed), topics=[USER_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS])
    await runtime.serve(
        [binding(NotificationServicer(feed, hub, runtime.auth, config.stream))],
        consumers=[consumer],
        workers=[hub, mail],
        on_drain=[hub.drain],
    )


if __name__ == "__main__":
    run_service(serve)
