import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_KIND_UNSPECIFIED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_CREATED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_CONFIRMED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_CANCELLED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_STATUS_CHANGED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_PAYMENT_FAILED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_PAYMENT_REFUNDED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_WELCOME: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_SHIPPED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_ORDER_DELIVERED: _ClassVar[NotificationKind]
NOTIFICATION_KIND_UNSPECIFIED: NotificationKind
NOTIFICATION_KIND_ORDER_CREATED: NotificationKind
NOTIFICATION_KIND_ORDER_CONFIRMED: NotificationKind
NOTIFICATION_KIND_ORDER_CANCELLED: NotificationKind
NOTIFICATION_KIND_ORDER_STATUS_CHANGED: NotificationKind
NOTIFICATION_KIND_PAYMENT_FAILED: NotificationKind
NOTIFICATION_KIND_PAYMENT_REFUNDED: NotificationKind
NOTIFICATION_KIND_WELCOME: NotificationKind
NOTIFICATION_KIND_ORDER_SHIPPED: NotificationKind
NOTIFICATION_KIND_ORDER_DELIVERED: NotificationKind

class Notification(_message.Message):
    __slots__ = ("id", "user_id", "kind", "title", "body", "order_id", "created_at", "read_at", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    kind: NotificationKind
    title: str
    body: str
    order_id: str
    created_at: _timestamp_pb2.Timestamp
    read_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., order_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "unread_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    unread_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., unread_only: _Optional[bool] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    next_page_token: str
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MarkNotificationReadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchNotificationsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...
