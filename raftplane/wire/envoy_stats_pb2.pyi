from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamMetricsMessage(_message.Message):
    __slots__ = ("identifier", "envoy_metrics")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ENVOY_METRICS_FIELD_NUMBER: _ClassVar[int]
    identifier: EnvoyIdentifier
    envoy_metrics: _containers.RepeatedCompositeFieldContainer[MetricFamily]
    def __init__(self, identifier: _Optional[_Union[EnvoyIdentifier, _Mapping]] = ..., envoy_metrics: _Optional[_Iterable[_Union[MetricFamily, _Mapping]]] = ...) -> None: ...

class EnvoyIdentifier(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: bytes
    def __init__(self, node: _Optional[bytes] = ...) -> None: ...

class MetricFamily(_message.Message):
    __slots__ = ("name", "type", "metric")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: int
    metric: _containers.RepeatedCompositeFieldContainer[Metric]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[int] = ..., metric: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("gauge", "counter")
    GAUGE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    gauge: MetricValue
    counter: MetricValue
    def __init__(self, gauge: _Optional[_Union[MetricValue, _Mapping]] = ..., counter: _Optional[_Union[MetricValue, _Mapping]] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: float
    def __init__(self, value: _Optional[float] = ...) -> None: ...
