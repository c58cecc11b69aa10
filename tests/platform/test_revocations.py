"""The deny-list fails closed: events are read apart from being applied, an
undecodable record is counted and skipped by the feed (a broadcast consumer of
the issuer's revocation events, named in mesh.yaml), and until the list is
loaded a valid user token is refused with UNAVAILABLE while public calls are
served."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import jwt
import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.auth.revocation_feed import CLOCK_SKEW_MARGIN_SECONDS, IssuerReplayWindow, RevocationFeed
from shopmesh_platform.auth.revocations import (
    Revocation,
    RevocationList,
    UndecodableRecord,
    revocation_of,
    token_id_hash,
)
from shopmesh_platform.auth.tokens import JwtVerifier, TokenConfig, published_token_lifetime
from shopmesh_platform.errors import Unavailable
from shopmesh_platform.events.consumer import ConsumerMetrics
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.mesh import load_mesh
from shopmesh_platform.server import ShopmeshServer
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build

SESSION_REVOKED = [
    ("event-id", str(uuid.uuid4()).encode()),
    ("event-type", b"shopmesh.user.v1.SessionRevoked"),
    ("content-type", b"application/x-protobuf"),
]
TOKENS = TokenConfig(issuer="shopmesh-users", audience="shopmesh", ttl_seconds=3600)


def session_revoked(token_id: str, expires_at: float) -> bytes:
    event = user_events.SessionRevoked(
        user_id=str(uuid.uuid4()),
        token_id_hash=token_id_hash(token_id),
        expires_at=timestamp_pb2.Timestamp(seconds=int(expires_at)),
    )
    return event.SerializeToString()


def test_a_session_revoked_event_reads_as_its_revocation() -> None:
    expires_at = time.time() + 600
    event = user_events.SessionRevoked.FromString(session_revoked("jti-1", expires_at))
    assert revocation_of(event) == Revocation(token_id_hash("jti-1"), float(int(expires_at)))


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (user_events.SessionRevoked(token_id_hash="abc"), "sha256"),
        (user_events.SessionRevoked(token_id_hash="a" * 64), "expires_at"),
        (user_events.SessionRevoked(), "sha256"),
    ],
)
def test_a_session_revoked_event_that_holds_none_is_undecodable(
    event: user_events.SessionRevoked, problem: str
) -> None:
    with pytest.raises(UndecodableRecord, match=problem):
        revocation_of(event)


async def test_the_list_fails_closed_until_loaded() -> None:
    revocations = RevocationList()
    revocations.revoke("jti-revoked", time.time() + 600)
    revocations.revoke("jti-expired", time.time() - 1)
    with pytest.raises(Unavailable, match="revocations not loaded"):
        await revocations.is_revoked("jti-other")
    revocations.mark_loaded()
    assert await revocations.is_revoked("jti-revoked")
    assert not await revocations.is_revoked("jti-other")
    assert not await revocations.is_revoked("jti-expired")
    assert len(revocations) == 1


def record(offset: int, headers: list[tuple[str, bytes]], value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic="user-events",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"user",
        value=value,
        checksum=None,
        serialized_key_size=4,
        serialized_value_size=len(value),
        headers=headers,
    )


def feed_of(revocations: RevocationList, registry: CollectorRegistry) -> RevocationFeed:
    """The feed as every non-issuer service builds it, from mesh.yaml's `auth` section."""
    auth = load_mesh().auth
    assert auth is not None

    async def no_keys() -> Mapping[str, Any]:
        return {"keys": []}

    return RevocationFeed(
        KafkaConfig("127.0.0.1:1", 1000),
        auth,
        revocations,
        no_keys,
        service="inventory",
        catalog=TopicCatalog.load(),
        registry=registry,
        metrics=ConsumerMetrics(registry),
    )


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xff\xff\xff not a protobuf message",
        user_events.SessionRevoked(token_id_hash="abc").SerializeToString(),
        user_events.SessionRevoked(token_id_hash="a" * 64).SerializeToString(),
    ],
)
async def test_an_undecodable_record_is_counted_and_skipped_and_the_next_applies(value: bytes) -> None:
    revocations = RevocationList()
    registry = CollectorRegistry()
    feed = feed_of(revocations, registry)
    await feed.consumer.deliver(record(0, SESSION_REVOKED, value))
    await feed.consumer.deliver(record(1, SESSION_REVOKED, session_revoked("jti-after", time.time() + 600)))
    assert registry.get_sample_value("revocation_records_skipped_total") == 1
    assert revocations.contains("jti-after")
    assert registry.get_sample_value("revocations_loaded") == 0
    feed.caught_up()
    assert registry.get_sample_value("revocations_loaded") == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("event-id", str(uuid.uuid4()).encode()), ("event-type", b"shopmesh.user.v1.UserRegistered")],
        [("event-id", str(uuid.uuid4()).encode()), ("event-type", b"\xff\xfe not utf-8")],
    ],
)
async def test_other_records_are_not_revocations(headers: list[tuple[str, bytes]]) -> None:
    revocations = RevocationList()
    registry = CollectorRegistry()
    await feed_of(revocations, registry).consumer.deliver(record(0, headers, b"\xff\xff garbage"))
    assert len(revocations) == 0
    assert registry.get_sample_value("revocation_records_skipped_total") == 0


@pytest.mark.parametrize(
    ("jwks", "lifetime"),
    [
        ({"keys": [], "token_lifetime_seconds": 900}, 900.0),
        ({"keys": []}, None),
        ({"keys": [], "token_lifetime_seconds": 0}, None),
        ({"keys": [], "token_lifetime_seconds": "900"}, None),
    ],
)
async def test_the_replay_window_is_the_lifetime_the_issuer_publishes(
    jwks: Mapping[str, Any], lifetime: float | None
) -> None:
    assert published_token_lifetime(jwks) == lifetime

    async def source() -> Mapping[str, Any]:
        return jwks

    window = await IssuerReplayWindow(source).seconds_back()
    assert window == (None if lifetime is None else lifetime + CLOCK_SKEW_MARGIN_SECONDS)


class Issuer:
    """Signs tokens the way the users service does, and publishes its key."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}

    async def jwks(self) -> Mapping[str, Any]:
        return {"keys": [self.jwk], "token_lifetime_seconds": TOKENS.ttl_seconds}

    def token(self, token_id: str, role: str = "admin") -> str:
        now = int(time.time())
        claims = {
            "iss": TOKENS.issuer,
            "aud": TOKENS.audience,
            "sub": "user-1",
            "role": role,
            "jti": token_id,
            "iat": now,
            "exp": now + 600,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": "k1"})


@pytest.fixture
async def guarded(make_config: ConfigFactory) -> AsyncIterator[tuple[ShopmeshServer, Issuer, RevocationList]]:
    issuer, revocations = Issuer(), RevocationList()
    server = build(make_config(), SampleInventory(), user_tokens=JwtVerifier(TOKENS, issuer.jwks, revocations))
    await server.start()
    yield server, issuer, revocations
    await server.drain()


async def create_product(server: ShopmeshServer, token: str) -> aio.AioRpcError:
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        with pytest.raises(aio.AioRpcError) as caught:
            await inventory_grpc.InventoryServiceStub(chan).CreateProduct(
                inventory_pb2.CreateProductRequest(id="prod-1", name="x", price=1, currency="USD"),
                metadata=(("authorization", f"Bearer {token}"),),
            )
    return caught.value


def reason(error: aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.reason)


async def test_user_calls_fail_closed_until_loaded_while_public_calls_are_served(
    guarded: tuple[ShopmeshServer, Issuer, RevocationList],
) -> None:
    server, issuer, revocations = guarded
    not_loaded = await create_product(server, issuer.token("jti-1"))
    assert (not_loaded.code(), reason(not_loaded)) == (grpc.StatusCode.UNAVAILABLE, "REVOCATIONS_NOT_LOADED")
    assert "revocations not loaded" in (not_loaded.details() or "")
    # A bad token is still UNAUTHENTICATED: only valid tokens wait for the list.
    forged = await create_product(server, issuer.token("jti-1")[:-4] + "AAAA")
    assert forged.code() == grpc.StatusCode.UNAUTHENTICATED
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        product = await inventory_grpc.InventoryServiceStub(chan).GetProduct(
            inventory_pb2.GetProductRequest(id="prod-7")
        )
    assert product.id == "prod-7"

    revocations.revoke("jti-revoked", time.time() + 600)
    revocations.mark_loaded()
    # Past authentication the sample's CreateProduct answers UNAVAILABLE WARMING_UP.
    accepted = await create_product(server, issuer.token("jti-1"))
    assert (accepted.code(), reason(accepted)) == (grpc.StatusCode.UNAVAILABLE, "WARMING_UP")
    revoked = await create_product(server, issuer.token("jti-revoked"))
    assert (revoked.code(), reason(revoked)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
