"""Database errors, told without the data they carry.

PostgreSQL's errors hold the offending row in their `detail` ("Failing row
contains (…)": emails, password hashes) and often values in their message;
PyMongo's duplicate-key errors hold the key. Two things here keep those out of
answers and logs, in one place:

- `refusal(exc)`: the domain error a constraint violation that escaped a
  handler stands for. A unique violation (or a duplicate key) is ALREADY_EXISTS;
  any other integrity violation (check, not null, foreign key, exclusion) is
  INVALID_ARGUMENT. The message and metadata name the constraint, table and
  column, never a value. The status interceptor applies it to every call.
- `outage(exc)`: UNAVAILABLE for an error that says the database could not be
  reached or went away mid-call (refused or reset connection, server shutting
  down or not yet accepting connections, too many connections, no MongoDB
  server selectable): the client may retry; it is not a bug, so not INTERNAL.
- `format_exception(exc)`: a traceback for logs in which every database error
  is only its class, SQLSTATE/code, constraint, table and column. The JSON log
  formatter uses it, so no log line quotes a row, whoever logs the exception.
"""

from __future__ import annotations

import traceback

import asyncpg
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from shopmesh_platform.errors import AlreadyExists, DomainError, FieldViolation, InvalidArgument, Unavailable

DOMAIN = "database"
CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _names(exc: asyncpg.PostgresError) -> dict[str, str]:
    """The schema names an error carries (never values)."""
    names = {
        "constraint": getattr(exc, "constraint_name", None),
        "table": getattr(exc, "table_name", None),
        "column": getattr(exc, "column_name", None),
    }
    return {key: str(value) for key, value in names.items() if value}


def refusal(exc: BaseException) -> DomainError | None:
    """The client's error for a constraint violation; None for anything else (a bug)."""
    if isinstance(exc, DuplicateKeyError):
        return AlreadyExists("a record with this key already exists", reason="DUPLICATE_KEY", domain=DOMAIN)
    if not isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return None
    names = _names(exc)
    what = names.get("constraint") or names.get("column") or "a constraint"
    where = f" of {names['table']}" if "table" in names else ""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return AlreadyExists(
            f"a record with the same {what}{where} already exists",
            reason="ALREADY_EXISTS",
            domain=DOMAIN,
            metadata=names,
        )
    violations = [FieldViolation(field=names["column"], description=f"violates {what}")] if "column" in names else []
    return InvalidArgument(
        f"the request violates {what}{where}",
        reason="CONSTRAINT_VIOLATION",
        domain=DOMAIN,
        metadata=names,
        field_violations=violations,
    )


# Errors meaning "the database is not there right now", never "the request is wrong".
_OUTAGES: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    asyncpg.PostgresConnectionError,  # includes a connection lost mid-operation
    asyncpg.CannotConnectNowError,  # starting up or in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    ConnectionFailure,  # PyMongo: AutoReconnect, NetworkTimeout, no server selectable
)


def outage(exc: BaseException) -> DomainError | None:
    """UNAVAILABLE when `exc` says the database could not be reached; None for anything else."""
    if not isinstance(exc, _OUTAGES):
        return None
    return Unavailable(
        "the database is unavailable; retry with the same request id",
        reason="DATABASE_UNAVAILABLE",
        domain=DOMAIN,
    )


def describe(exc: BaseException) -> str | None:
    """A one-line, value-free description of a database error; None for other exceptions."""
    if isinstance(exc, asyncpg.PostgresError):
        fields = {"sqlstate": str(exc.sqlstate), **_names(exc)}
        return f"{type(exc).__module__}.{type(exc).__qualname__}: " + " ".join(f"{k}={v}" for k, v in fields.items())
    if isinstance(exc, PyMongoError):
        code = getattr(exc, "code", None)
        return f"{type(exc).__module__}.{type(exc).__qualname__}: code={code}"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost last (as Python prints them)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain[::-1]


def format_exception(exc: BaseException) -> str:
    """Like traceback.format_exception, with database errors told by `describe` only."""
    chain = _chain(exc)
    if all(describe(link) is None for link in chain):
        return "".join(traceback.format_exception(exc)).rstrip("\n")
    parts: list[str] = []
    for index, link in enumerate(chain):
        if index:
            parts.append(CAUSE if link.__cause__ is chain[index - 1] else CONTEXT)
        if link.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(link.__traceback__))
        safe = describe(link)
        parts.append(safe + "\n" if safe is not None else "".join(traceback.format_exception_only(link)))
    return "".join(parts).rstrip("\n")
