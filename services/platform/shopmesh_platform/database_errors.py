"""Database errors, told without the data they carry.

PostgreSQL's errors hold the offending row in their `detail` ("Failing row
contains (…)": emails, password hashes) and often values in their message;
PyMongo's duplicate-key errors hold the key. Three things here keep those out of
answers and logs, and a database outage out of the bugs, in one place:

- `refusal(exc)`: the domain error a constraint violation that escaped a
  handler stands for. A unique violation (or a duplicate key) is ALREADY_EXISTS;
  any other integrity violation (check, not null, foreign key, exclusion) is
  INVALID_ARGUMENT. The message and metadata name the constraint, table and
  column, never a value. The status interceptor applies it to every call.
- `unavailability(exc)`: a database that cannot be reached right now (connection
  refused or lost, the server shutting down or recovering from a crash, no MongoDB
  server to select) is UNAVAILABLE, which a client may retry (with its request id),
  not INTERNAL: nothing is wrong with the request or the code.
- `format_exception(exc)`: a traceback for logs in which every database error
  is only its class, SQLSTATE/code, constraint, table and column. The JSON log
  formatter uses it, so no log line quotes a row, whoever logs the exception.
"""

from __future__ import annotations

import traceback

import asyncpg
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from shopmesh_platform.errors import AlreadyExists, DomainError, FieldViolation, InvalidArgument, Unavailable

DOMAIN = "database"
CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
# PostgreSQL refuses NUL in text (22021) and characters its encoding lacks (22P05).
UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)

# MongoDB's InternalError: what FerretDB answers while the PostgreSQL under it is down or
# restarting (seen in `make chaos`). The server failed, not the request: retryable.
MONGO_INTERNAL_ERROR = 1

# What a database that is down, restarting or unreachable raises (asyncpg: SQLSTATE classes 08 and 57,
# and too many connections; PyMongo: no connection or no server to select; the OS: refused or reset).
UNREACHABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    ConnectionFailure,
    ConnectionError,
)


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
    if isinstance(exc, UNSTORABLE_TEXT):
        # A value the database cannot hold as text (a NUL character): the request's fault, named without it.
        return InvalidArgument(
            "the request contains a character that cannot be stored (e.g. NUL)",
            reason="INVALID_CHARACTER",
            domain=DOMAIN,
        )
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


def is_outage(exc: BaseException) -> bool:
    """The exception, or one it was raised from, says the database cannot serve right now."""
    return any(
        isinstance(link, UNREACHABLE) or _closed_under_us(link) or _server_internal_error(link) for link in _chain(exc)
    )


def _server_internal_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationFailure) and exc.code == MONGO_INTERNAL_ERROR


def unavailability(exc: BaseException) -> DomainError | None:
    """UNAVAILABLE when the exception, or one it was raised from, says the database cannot be reached."""
    if is_outage(exc):
        return Unavailable(
            "the service's database is unavailable; try again later", reason="DATABASE_UNAVAILABLE", domain=DOMAIN
        )
    return None


def _closed_under_us(exc: BaseException) -> bool:
    """asyncpg's InterfaceError for a connection the server closed mid-transaction (else it is misuse: a bug),
    or its InternalClientError: its own protocol state left mid-operation by a connection the server dropped
    (seen when `make chaos` SIGKILLed PostgreSQL; the pool terminates such a connection when it comes back)."""
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


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
