"""Session state (session advisory locks, LISTEN, session settings, cursors) lives only
on dedicated connections, never on pool connections that other calls borrow next."""

from __future__ import annotations

import re
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"

# SQL (or asyncpg calls) whose effect outlives the statement's transaction.
SESSION_STATE = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\s*\("  # session advisory locks (the _xact_ ones end with the transaction)
    r"|(?-i:\bLISTEN\s)"  # the SQL keyword, not the word "listen" in prose
    r"|connection\.add_listener\("
    r"|[\"']\s*SET\s+(SESSION\s+)?[a-z_.]+\s*(=|TO)\s"
    r"|set_config\s*\("
    r"|\bDECLARE\s+\w+\s+(\w+\s+)*CURSOR\b"
    r"|(?-i:\.cursor\()"  # asyncpg cursors (not paging.Cursor)
    r"|CREATE\s+TEMP(ORARY)?\s+TABLE",
    re.IGNORECASE,
)

# Each opens its own connection (asyncpg.connect) for the state it holds.
DEDICATED_CONNECTIONS = {
    "platform/shopmesh_platform/events/outbox.py",  # the relay's lease: a session advisory lock
    "platform/shopmesh_platform/migrations.py",  # one migrator at a time: a session advisory lock
    "notifications/shopmesh_notifications/hub.py",  # LISTEN for the live feed
}


def test_session_state_is_held_only_on_dedicated_connections() -> None:
    holders = {
        str(path.relative_to(SERVICES))
        for path in SERVICES.rglob("*.py")
        if SESSION_STATE.search(path.read_text(encoding="utf-8"))
    }
    assert holders <= DEDICATED_CONNECTIONS, (
        f"session state on pool connections? {sorted(holders - DEDICATED_CONNECTIONS)}"
    )
    for module in DEDICATED_CONNECTIONS:
        assert "asyncpg.connect(" in (SERVICES / module).read_text(encoding="utf-8"), module


def test_the_pattern_catches_session_state() -> None:
    for sql in (
        "SELECT pg_advisory_lock($1)",
        "SELECT pg_try_advisory_lock($1, $2)",
        "LISTEN channel",
        "await connection.add_listener('c', f)",
        "'SET statement_timeout = 0'",
        '"SET SESSION search_path TO x"',
        "SELECT set_config('a.b', 'c', false)",
        "DECLARE c NO SCROLL CURSOR FOR SELECT 1",
        "CREATE TEMP TABLE t (x int)",
        "async for row in connection.cursor(query):",
    ):
        assert SESSION_STATE.search(sql), sql
    for sql in (
        "SELECT pg_advisory_xact_lock($1)",
        "UPDATE t SET x = 1",
        "SELECT pg_try_advisory_xact_lock($1, 0)",
        "paging.Cursor(after=x)",
    ):
        assert not SESSION_STATE.search(sql), sql
