"""Database errors that escape a handler: a constraint violation is the client's
error (INVALID_ARGUMENT / ALREADY_EXISTS naming the constraint), and neither the
answer nor any log line quotes the row PostgreSQL put in the error's detail."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.database_errors import format_exception, is_outage, refusal, unavailability
from shopmesh_platform.errors import ErrorCode
from shopmesh_platform.logs import JsonFormatter
from shopmesh_platform.server import ShopmeshServer
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SECRET_ROW, SampleInventory, build
from tests.platform.test_server import details_of


@pytest.fixture
async def channel(make_config: ConfigFactory) -> AsyncIterator[aio.Channel]:
    server: ShopmeshServer = build(make_config(SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        yield chan
    await server.drain()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything logged, as the services format it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("inventory"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


async def get_product(channel: aio.Channel, product_id: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).GetProduct(inventory_pb2.GetProductRequest(id=product_id))
    return caught.value


async def test_a_check_violation_is_invalid_argument_naming_the_constraint(
    channel: aio.Channel, logs: io.StringIO
) -> None:
    error = await get_product(channel, "prod-check")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "users_email_format" in error.details()
    [info] = [d for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert (info.reason, info.metadata["constraint"], info.metadata["table"]) == (
        "CONSTRAINT_VIOLATION",
        "users_email_format",
        "users",
    )
    logged = logs.getvalue()
    assert "users_email_format" in logged
    for secret in ("Failing row", "$argon2id$", "ada@localhost"):
        assert secret not in error.details()
        assert secret not in logged


async def test_a_database_error_inside_a_bug_is_logged_without_its_row(channel: aio.Channel, logs: io.StringIO) -> None:
    error = await get_product(channel, "prod-db-crash")
    assert error.code() == grpc.StatusCode.INTERNAL
    [entry] = [json.loads(line) for line in logs.getvalue().splitlines() if "exception" in json.loads(line)]
    assert "CheckViolationError" in entry["exception"]
    assert "constraint=users_email_format" in entry["exception"]
    assert "could not store the product" in entry["exception"]
    assert "Failing row" not in logs.getvalue()
    assert "$argon2id$" not in logs.getvalue()


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        ({"C": "23505", "n": "users_email_unique", "t": "users"}, ErrorCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
        ({"C": "23502", "c": "email", "t": "users"}, ErrorCode.INVALID_ARGUMENT, "CONSTRAINT_VIOLATION"),
        ({"C": "23503", "n": "user_profiles_user_id_fkey"}, ErrorCode.INVALID_ARGUMENT, "CONSTRAINT_VIOLATION"),
        ({"C": "23P01", "n": "no_overlap"}, ErrorCode.INVALID_ARGUMENT, "CONSTRAINT_VIOLATION"),
    ],
)
def test_each_integrity_violation_has_its_status(fields: dict[str, str], code: ErrorCode, reason: str) -> None:
    exc = asyncpg.PostgresError.new({"M": "refused", "D": SECRET_ROW, **fields})
    mapped = refusal(exc)
    assert mapped is not None
    assert (mapped.code, mapped.reason) == (code, reason)
    assert "Failing row" not in mapped.message
    assert "Failing row" not in format_exception(exc)


def test_a_not_null_violation_names_the_field() -> None:
    mapped = refusal(asyncpg.PostgresError.new({"C": "23502", "M": "null value", "c": "email", "t": "users"}))
    assert mapped is not None
    assert [v.field for v in mapped.field_violations] == ["email"]


def test_a_duplicate_mongo_key_is_already_exists_without_the_key() -> None:
    exc = DuplicateKeyError('E11000 duplicate key error dup key: { _id: "secret-order" }', 11000)
    mapped = refusal(exc)
    assert mapped is not None and mapped.code == ErrorCode.ALREADY_EXISTS
    assert "secret-order" not in mapped.message
    assert "secret-order" not in format_exception(exc)


def test_other_errors_are_not_refusals_and_keep_their_traceback() -> None:
    assert refusal(RuntimeError("bug")) is None
    assert refusal(asyncpg.PostgresError.new({"C": "42P01", "M": "no such table"})) is None
    try:
        raise ValueError("plain message")
    except ValueError as exc:
        assert "ValueError: plain message" in format_exception(exc)


async def test_a_background_loop_logs_a_database_failure_without_its_row(caplog: pytest.LogCaptureFixture) -> None:
    from shopmesh_platform.retry import keep_running

    retried = asyncio.Event()
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncpg.PostgresError.new({"C": "23514", "M": "check", "D": SECRET_ROW, "n": "users_email_format"})
        retried.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.WARNING):
        loop = asyncio.create_task(keep_running("relay", attempt, logging.getLogger("test.relay"), initial_backoff=0))
        await asyncio.wait_for(retried.wait(), timeout=5)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    [record] = [r for r in caplog.records if r.name == "test.relay"]
    assert "users_email_format" in record.__dict__["error"]
    assert "Failing row" not in record.__dict__["error"]


# Found by the chaos test (tests/integration/test_chaos.py): a request that met its database
# down or restarting (PostgreSQL or FerretDB SIGKILLed) answered INTERNAL, HTTP 500, as if it
# were a bug; it is UNAVAILABLE, which clients retry with the same request id.
async def test_a_lost_database_connection_is_unavailable_not_internal(channel: aio.Channel, logs: io.StringIO) -> None:
    error = await get_product(channel, "prod-db-down")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    [info] = [d for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert (info.reason, info.domain) == ("DATABASE_UNAVAILABLE", "database.shopmesh.dev")
    assert "unhandled error" not in logs.getvalue()


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.PostgresError.new({"C": "57P03", "M": "the database system is starting up"}),
        asyncpg.PostgresError.new({"C": "57P01", "M": "terminating connection due to administrator command"}),
        asyncpg.PostgresError.new({"C": "53300", "M": "too many connections"}),
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        # make chaos, PostgreSQL SIGKILLed mid-transaction: this answered INTERNAL.
        asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed"),
        # make chaos, PostgreSQL SIGKILLed under load: a pool connection's protocol left mid-operation.
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        AutoReconnect("connection closed"),
        ServerSelectionTimeoutError("No servers found yet"),
    ],
)
def test_every_way_of_not_reaching_a_database_is_unavailable(exc: Exception) -> None:
    mapped = unavailability(exc)
    assert mapped is not None and (mapped.code, mapped.reason) == (ErrorCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
    try:
        raise RuntimeError("storing the order failed") from exc
    except RuntimeError as wrapped:
        assert unavailability(wrapped) is not None


def test_a_bug_is_not_mistaken_for_an_outage() -> None:
    assert unavailability(RuntimeError("bug")) is None
    assert unavailability(asyncpg.PostgresError.new({"C": "42P01", "M": "no such table"})) is None
    assert unavailability(asyncpg.PostgresError.new({"C": "23505", "M": "duplicate"})) is None
    assert unavailability(DuplicateKeyError("E11000", 11000)) is None
    assert unavailability(asyncpg.InterfaceError("cannot perform operation: another operation is in progress")) is None


@pytest.mark.parametrize("product_id", ["prod-db-gone", "prod-mongo-gone"])
async def test_a_refused_connection_or_no_mongo_server_is_unavailable(channel: aio.Channel, product_id: str) -> None:
    error = await get_product(channel, product_id)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    [info] = [d for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert info.reason == "DATABASE_UNAVAILABLE"
    assert "127.0.0.1" not in error.details()


@pytest.mark.parametrize("sqlstate", ["22021", "22P05"])
def test_text_the_database_cannot_hold_is_invalid_argument(sqlstate: str) -> None:
    """Found by the REST fuzzer: a login email with a NUL character answered 500."""
    refused = refusal(
        asyncpg.PostgresError.new({"C": sqlstate, "M": 'invalid byte sequence for encoding "UTF8": 0x00'})
    )
    assert refused is not None and refused.code is ErrorCode.INVALID_ARGUMENT
    assert refused.reason == "INVALID_CHARACTER" and "0x00" not in refused.message


def test_ferretdbs_internal_error_is_an_outage_but_other_operation_failures_are_not() -> None:
    """Found by `make chaos`: FerretDB answers InternalError (code 1) while its PostgreSQL restarts."""
    internal = OperationFailure("code=1", code=1)
    assert is_outage(internal)
    wrapped = RuntimeError("could not store the order")
    wrapped.__cause__ = internal
    unavailable = unavailability(wrapped)
    assert unavailable is not None and unavailable.code is ErrorCode.UNAVAILABLE
    assert not is_outage(OperationFailure("bad query", code=2))
    assert unavailability(OperationFailure("bad query", code=2)) is None
