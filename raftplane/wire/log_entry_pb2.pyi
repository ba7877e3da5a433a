from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUT_MODE_UNSPECIFIED: _ClassVar[PutMode]
    PUT_MODE_CREATE: _ClassVar[PutMode]
    PUT_MODE_REPLACE: _ClassVar[PutMode]
PUT_MODE_UNSPECIFIED: PutMode
PUT_MODE_CREATE: PutMode
PUT_MODE_REPLACE: PutMode

class LogEntry(_message.Message):
    __slots__ = ("format_version", "proposed_at_ms", "commands", "retention")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    proposed_at_ms: int
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    retention: Retention
    def __init__(self, format_version: _Optional[int] = ..., proposed_at_ms: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ..., retention: _Optional[_Union[Retention, _Mapping]] = ...) -> None: ...

class Retention(_message.Message):
    __slots__ = ("audit_max_age_ms", "audit_max_events", "idempotency_ttl_ms")
    AUDIT_MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    audit_max_age_ms: int
    audit_max_events: int
    idempotency_ttl_ms: int
    def __init__(self, audit_max_age_ms: _Optional[int] = ..., audit_max_events: _Optional[int] = ..., idempotency_ttl_ms: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("put", "delete", "barrier", "atomic", "audit", "idempotency_key", "request_fingerprint", "principal")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    put: Put
    delete: Delete
    barrier: Barrier
    atomic: Atomic
    audit: Audit
    idempotency_key: str
    request_fingerprint: bytes
    principal: Principal
    def __init__(self, put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., barrier: _Optional[_Union[Barrier, _Mapping]] = ..., atomic: _Optional[_Union[Atomic, _Mapping]] = ..., audit: _Optional[_Union[Audit, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., request_fingerprint: _Optional[bytes] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("token_id", "name")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    name: str
    def __init__(self, token_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Atomic(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class Audit(_message.Message):
    __slots__ = ("action", "team", "resource", "result")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    action: str
    team: str
    resource: str
    result: str
    def __init__(self, action: _Optional[str] = ..., team: _Optional[str] = ..., resource: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class Reference(_message.Message):
    __slots__ = ("kind", "name", "field", "expected_revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    field: str
    expected_revision: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., field: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class Put(_message.Message):
    __slots__ = ("kind", "name", "value_json", "mode", "expected_revision", "references", "team")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    value_json: bytes
    mode: PutMode
    expected_revision: int
    references: _containers.RepeatedCompositeFieldContainer[Reference]
    team: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., value_json: _Optional[bytes] = ..., mode: _Optional[_Union[PutMode, str]] = ..., expected_revision: _Optional[int] = ..., references: _Optional[_Iterable[_Union[Reference, _Mapping]]] = ..., team: _Optional[str] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("kind", "name", "expected_revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    expected_revision: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class Barrier(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
