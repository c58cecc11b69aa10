from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
MAJOR_UNITS_FIELD_NUMBER: _ClassVar[int]
major_units: _descriptor.FieldDescriptor
CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
currency_code: _descriptor.FieldDescriptor
ACCOUNT_EMAIL_FIELD_NUMBER: _ClassVar[int]
account_email: _descriptor.FieldDescriptor
