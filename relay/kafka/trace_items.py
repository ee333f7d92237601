"""Trace item messages (logs, trace metrics) for ``snuba-items`` (protobuf ``TraceItem``).

Logs arrive as JSON objects (``{timestamp, trace_id, level, body, attributes}``) inside a
``log`` item container. Attributes are typed ``{"type": ..., "value": ...}`` pairs.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]
from sentry_protos.snuba.v1.request_common_pb2 import TraceItemType
from sentry_protos.snuba.v1.trace_item_pb2 import AnyValue, CategoryCount, Outcomes, TraceItem

from relay.kafka.item_meta import meta_attributes


class InvalidTraceItem(ValueError):
    """A required field is missing or malformed; the item gets an ``invalid_*`` outcome."""


def trace_item_headers(project_id: int, item_type: int) -> list[tuple[str, bytes]]:
    """Kafka headers Relay writes with every trace item."""
    return [("project_id", str(project_id).encode()), ("item_type", str(item_type).encode())]


def _timestamp(seconds: float) -> Timestamp:
    whole = math.floor(seconds)
    return Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def _any_value(attribute: Any) -> AnyValue | None:
    if not isinstance(attribute, Mapping):
        return None
    kind = attribute.get("type")
    value = attribute.get("value")
    if value is None:
        return None
    if kind == "string" and isinstance(value, str):
        return AnyValue(string_value=value)
    if kind == "boolean" and isinstance(value, bool):
        return AnyValue(bool_value=value)
    if kind == "integer" and isinstance(value, int | str):
        try:
            return AnyValue(int_value=int(value))
        except ValueError:
            return None
    if kind == "double" and isinstance(value, int | float) and not isinstance(value, bool):
        return AnyValue(double_value=float(value))
    return None


def _item_id(timestamp: float) -> bytes:
    # A UUIDv7 for the item's time, little-endian, as EAP expects item ids.
    millis = int(timestamp * 1000) & 0xFFFF_FFFF_FFFF
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    return uuid.UUID(int=value).int.to_bytes(16, "little")


def encode_log_item(
    log: Mapping[str, Any],
    *,
    organization_id: int,
    project_id: int,
    key_id: int | None,
    received_at: float,
    retention_days: int,
    payload_size: int,
    quantities: list[tuple[int, int]] | None = None,
) -> bytes:
    """Encode one log as a ``TraceItem`` of type log; raises :class:`InvalidTraceItem`."""
    timestamp = log.get("timestamp")
    trace_id = log.get("trace_id")
    level = log.get("level")
    body = log.get("body")
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool) or timestamp < 0:
        raise InvalidTraceItem("log timestamp missing")
    if not isinstance(trace_id, str) or not isinstance(level, str) or not isinstance(body, str):
        raise InvalidTraceItem("log trace_id, level or body missing")
    try:
        trace = uuid.UUID(trace_id)
    except ValueError:
        raise InvalidTraceItem("invalid trace id") from None
    item = TraceItem(
        organization_id=organization_id,
        project_id=project_id,
        trace_id=trace.hex,
        item_id=_item_id(float(timestamp)),
        item_type=TraceItemType.TRACE_ITEM_TYPE_LOG,
        timestamp=_timestamp(float(timestamp)),
        received=_timestamp(received_at or time.time()),
        retention_days=retention_days,
        downsampled_retention_days=retention_days,
        client_sample_rate=1.0,
        server_sample_rate=1.0,
    )
    # What scrubbing changed (remarks in `_meta`) is kept, as Relay keeps it.
    for name, meta in meta_attributes(log.get("_meta")).items():
        item.attributes[name].CopyFrom(AnyValue(string_value=meta))
    attributes = log.get("attributes")
    if isinstance(attributes, Mapping):
        for name, attribute in attributes.items():
            value = _any_value(attribute)
            if value is not None:
                item.attributes[name].CopyFrom(value)
    # Fields of the log win over attributes of the same name, as in Relay.
    item.attributes["sentry.severity_text"].CopyFrom(AnyValue(string_value=level))
    item.attributes["sentry.timestamp_precise"].CopyFrom(
        AnyValue(int_value=int(float(timestamp) * 1e9))
    )
    item.attributes["sentry.body"].CopyFrom(AnyValue(string_value=body))
    span_id = log.get("span_id")
    if isinstance(span_id, str):
        item.attributes["sentry.span_id"].CopyFrom(AnyValue(string_value=span_id))
    item.attributes["sentry.payload_size_bytes"].CopyFrom(AnyValue(int_value=payload_size))
    item.outcomes.CopyFrom(
        Outcomes(
            key_id=key_id or 0,
            category_count=[
                CategoryCount(data_category=c, quantity=q) for c, q in quantities or ()
            ],
        )
    )
    data: bytes = item.SerializeToString()
    return data


LOG_ITEM_TYPE = int(TraceItemType.TRACE_ITEM_TYPE_LOG)
