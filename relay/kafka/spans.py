"""Span messages for ``ingest-spans`` (JSON): Relay's V2 span shape plus routing metadata.

Standalone ``span`` items arrive in the V1 shape (``op``, ``description``, ``timestamp``,
``data``); span V2 containers carry the V2 shape already. Both go out as V2, keyed by the
trace id mixed with the organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from relay.kafka.keys import partition_key_for
from relay.protocol.attributes import typed_attribute


class InvalidSpan(ValueError):
    """The span lacks a required field; it gets an ``invalid_span`` outcome."""


_encoder = msgspec.json.Encoder()


def _attribute(value: Any) -> dict[str, Any] | None:
    # Plain values keep their type; objects and lists travel as their JSON text.
    if isinstance(value, str | int | float | bool):
        return typed_attribute(value)
    if value is None:
        return None
    return {"type": "string", "value": _encoder.encode(value).decode()}


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def span_v1_to_v2(span: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a V1 span (as SDKs send ``span`` items) to the V2 shape."""
    attributes: dict[str, Any] = {}
    for source in ("tags", "data"):
        values = span.get(source)
        if isinstance(values, Mapping):
            for key, value in values.items():
                attribute = _attribute(value)
                if attribute is not None:
                    attributes[str(key)] = attribute
    for field, name in (
        ("op", "sentry.op"),
        ("description", "sentry.description"),
        ("segment_id", "sentry.segment.id"),
        ("exclusive_time", "sentry.exclusive_time"),
        ("origin", "sentry.origin"),
        ("status", "sentry.status"),
    ):
        attribute = _attribute(span.get(field))
        if attribute is not None:
            attributes[name] = attribute
    status = span.get("status")
    out: dict[str, Any] = {
        "trace_id": span.get("trace_id"),
        "parent_span_id": span.get("parent_span_id"),
        "span_id": span.get("span_id"),
        # Never the raw description: the name is not scrubbed. Relay names a V1 span
        # after scrubbing (``infer_span_name``), unless it sent ``sentry.name``.
        "name": _explicit_name(span),
        "status": "ok" if status in (None, "ok") else "error",
        "is_segment": bool(span.get("is_segment", False)),
        "start_timestamp": span.get("start_timestamp"),
        "end_timestamp": span.get("timestamp"),
        "links": span.get("links") if isinstance(span.get("links"), list) else None,
        "attributes": attributes,
    }
    return out


def _explicit_name(span: Mapping[str, Any]) -> str | None:
    data = span.get("data")
    name = data.get("sentry.name") if isinstance(data, Mapping) else None
    return name if isinstance(name, str) and name else None


def _attribute_text(attributes: Mapping[str, Any], name: str) -> str | None:
    attribute = attributes.get(name)
    value = attribute.get("value") if isinstance(attribute, Mapping) else None
    return value if isinstance(value, str) and value else None


def infer_span_name(span: Mapping[str, Any]) -> str:
    """The name of a converted V1 span, from its attributes once they are scrubbed.

    As Relay: a manually instrumented span is named by its (scrubbed) description, any
    other span by its operation. (Relay's per-operation name templates from
    sentry-conventions are not applied: those spans are named by the operation.)
    """
    attributes = span.get("attributes")
    if not isinstance(attributes, Mapping):
        return ""
    description = _attribute_text(attributes, "sentry.description")
    if description is not None and _attribute_text(attributes, "sentry.origin") == "manual":
        return description
    return _attribute_text(attributes, "sentry.op") or ""


def validate_span_v2(span: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidSpan` unless the required V2 fields are present and typed."""
    trace_id = span.get("trace_id")
    span_id = span.get("span_id")
    if not isinstance(trace_id, str):
        raise InvalidSpan("missing trace_id")
    try:
        uuid.UUID(trace_id)
    except ValueError:
        raise InvalidSpan("invalid trace_id") from None
    if not isinstance(span_id, str) or len(span_id) != 16:
        raise InvalidSpan("missing or invalid span_id")
    start = _number(span.get("start_timestamp"))
    end = _number(span.get("end_timestamp"))
    if start is None or end is None:
        raise InvalidSpan("missing timestamps")


def span_key(span: Mapping[str, Any], org_id: int) -> bytes | None:
    """The partition key of a span: its trace id mixed with the organization id."""
    trace_id = span.get("trace_id")
    if not isinstance(trace_id, str):
        return None
    try:
        return partition_key_for(trace_id, org_id)
    except ValueError:
        return None


def span_headers(project_id: int) -> list[tuple[str, bytes]]:
    """Kafka headers Relay writes with every span."""
    return [("project_id", str(project_id).encode())]


def encode_span_message(
    span: Mapping[str, Any],
    *,
    organization_id: int,
    project_id: int,
    key_id: int | None,
    event_id: str | None,
    received: float,
    retention_days: int,
    downsampled_retention_days: int | None = None,
) -> bytes:
    """Encode a V2 span with the routing metadata Relay adds."""
    message: dict[str, Any] = {
        "organization_id": organization_id,
        "project_id": project_id,
    }
    if key_id is not None:
        message["key_id"] = key_id
    if event_id is not None:
        message["event_id"] = uuid.UUID(event_id).hex
    message["received"] = received
    message["retention_days"] = retention_days
    message["downsampled_retention_days"] = downsampled_retention_days or retention_days
    trace_id = span.get("trace_id")
    for key, value in span.items():
        if key == "trace_id" and isinstance(trace_id, str):
            value = uuid.UUID(trace_id).hex
        message[key] = value
    message.setdefault("name", "")
    message.setdefault("status", "ok")
    return _encoder.encode(message)
