"""gRPC servicer of shopmesh.user.v1.UserService: converts between protos and the domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format

from shopmesh.user.v1 import user_service_pb2 as pb
from shopmesh.user.v1 import user_service_pb2_grpc
from shopmesh_platform.context import current_caller
from shopmesh_platform.errors import FieldViolation, InvalidArgument
from shopmesh_platform.server import ServiceBinding
from shopmesh_users.client import client_address
from shopmesh_users.domain import Users, to_timestamp
from shopmesh_users.keys import KeyStore
from shopmesh_users.records import ClientInfo, ProfileChanges, UserRecord

ROLES = {"customer": pb.ROLE_CUSTOMER, "admin": pb.ROLE_ADMIN}
STATUSES = {
    "active": pb.ACCOUNT_STATUS_ACTIVE,
    "suspended": pb.ACCOUNT_STATUS_SUSPENDED,
    "deleted": pb.ACCOUNT_STATUS_DELETED,
}


def to_proto(user: UserRecord) -> pb.User:
    message = pb.User(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        created_at=to_timestamp(user.created_at),
        updated_at=to_timestamp(user.updated_at),
        phone=user.phone or "",
        date_of_birth=user.date_of_birth.isoformat() if user.date_of_birth else "",
        email_verified=user.email_verified,
        account_status=STATUSES[user.account_status],
        role=ROLES[user.role],
        avatar_url=user.avatar_url or "",
        bio=user.bio or "",
    )
    if user.last_login is not None:
        message.last_login.CopyFrom(to_timestamp(user.last_login))
    if user.address:
        json_format.ParseDict(user.address, message.address, ignore_unknown_fields=True)
    return message


def _client(context: Any) -> ClientInfo:
    pairs = [(item.key, item.value) for item in context.invocation_metadata() or ()]
    address = client_address(pairs, context.peer(), current_caller().service_identity)
    return ClientInfo(device=str(dict(pairs).get("user-agent", ""))[:500] or None, ip_address=address)


def _changes(request: pb.UpdateUserRequest) -> ProfileChanges:
    date_of_birth = None
    if request.HasField("date_of_birth"):
        try:
            date_of_birth = dt.date.fromisoformat(request.date_of_birth)
        except ValueError:
            raise InvalidArgument(
                "date_of_birth is not a calendar date",
                reason="INVALID_REQUEST",
                field_violations=[FieldViolation("date_of_birth", "not a calendar date", "date")],
            ) from None
    address = json_format.MessageToDict(request.address) if request.HasField("address") else None
    return ProfileChanges(
        first_name=request.first_name if request.HasField("first_name") else None,
        last_name=request.last_name if request.HasField("last_name") else None,
        phone=request.phone if request.HasField("phone") else None,
        date_of_birth=date_of_birth,
        avatar_url=request.avatar_url if request.HasField("avatar_url") else None,
        bio=request.bio if request.HasField("bio") else None,
        address=address,
    )


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    """The users service's API."""

    def __init__(self, users: Users, keys: KeyStore, *, token_lifetime_seconds: int) -> None:
        self._users = users
        self._keys = keys
        self._token_lifetime_seconds = token_lifetime_seconds

    async def RegisterUser(self, request: pb.RegisterUserRequest, context: Any) -> pb.RegisterUserResponse:
        user, token = await self._users.register(
            email=request.email,
            password=request.password,
            first_name=request.first_name,
            last_name=request.last_name,
            client=_client(context),
        )
        return pb.RegisterUserResponse(user=to_proto(user), token=token)

    async def Login(self, request: pb.LoginRequest, context: Any) -> pb.LoginResponse:
        user, token = await self._users.login(email=request.email, password=request.password, client=_client(context))
        return pb.LoginResponse(token=token, user=to_proto(user))

    async def GetMe(self, request: pb.GetMeRequest, context: Any) -> pb.User:
        caller = current_caller()
        return to_proto(await self._users.get(caller, caller.user_id or ""))

    async def GetUser(self, request: pb.GetUserRequest, context: Any) -> pb.User:
        return to_proto(await self._users.get(current_caller(), request.id))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Any) -> pb.User:
        return to_proto(await self._users.update(current_caller(), request.id, _changes(request)))

    async def Logout(self, request: pb.LogoutRequest, context: Any) -> pb.LogoutResponse:
        await self._users.logout(current_caller())
        return pb.LogoutResponse()

    async def SuspendUser(self, request: pb.SuspendUserRequest, context: Any) -> pb.User:
        return to_proto(await self._users.suspend(current_caller(), request.id, request.reason))

    async def GetUserContact(self, request: pb.GetUserContactRequest, context: Any) -> pb.UserContact:
        user = await self._users.contact(request.user_id)
        return pb.UserContact(user_id=user.id, email=user.email, first_name=user.first_name, last_name=user.last_name)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Any) -> pb.GetJwksResponse:
        reply = json_format.ParseDict(self._keys.jwks(), pb.GetJwksResponse())
        # Published so every service replays revocations for as long as tokens live.
        reply.token_lifetime_seconds = self._token_lifetime_seconds
        return reply


def binding(servicer: UserServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, pb, user_service_pb2_grpc, "UserService")


__all__ = ["UserServicer", "binding"]
