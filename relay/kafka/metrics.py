"""Metric bucket messages for ``ingest-metrics`` (JSON), and the bucket wire model.

Buckets arrive from downstream relays as ``metric_buckets`` items (a JSON list) or in
``/api/0/relays/metrics/`` batches; this module only encodes them for Kafka. Which
buckets exist (session extraction, aggregation) is decided elsewhere.
"""

from __future__ import annotations

from typing import Any

import msgspec


class MetricBucket(msgspec.Struct, omit_defaults=True):
    """One aggregated metric bucket as relays exchange them (``relay_metrics::Bucket``)."""

    timestamp: int
    name: str
    type: str
    value: Any
    width: int = 0
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] | None = None

    @property
    def namespace(self) -> str:
        """The MRI's namespace: ``sessions`` for ``c:sessions/session@none``."""
        return metric_namespace(self.name)


def metric_namespace(name: str) -> str:
    """The namespace of an MRI (``<type>:<namespace>/<name>@<unit>``), or ``""``."""
    _, sep, rest = name.partition(":")
    if not sep:
        return ""
    namespace, slash, _ = rest.partition("/")
    return namespace if slash else ""


_bucket_list = msgspec.json.Decoder(list[MetricBucket])
_encoder = msgspec.json.Encoder()


def decode_buckets(payload: bytes) -> list[MetricBucket]:
    """Decode a ``metric_buckets`` item payload; raises ``msgspec.DecodeError``."""
    return _bucket_list.decode(payload)


def encode_buckets(buckets: list[MetricBucket]) -> bytes:
    """Encode buckets as a ``metric_buckets`` payload."""
    return _encoder.encode(buckets)


def metric_headers(namespace: str) -> list[tuple[str, bytes]]:
    """Kafka headers of a metric message: the consumer dispatches on the namespace."""
    return [("namespace", namespace.encode())]


def _kafka_value(kind: str, value: Any) -> Any:
    if kind in ("d", "s") and not isinstance(value, list):
        return [value]
    return value


def encode_metric_message(
    bucket: MetricBucket,
    *,
    org_id: int,
    project_id: int,
    retention_days: int,
    received_at: int | None = None,
) -> bytes:
    """Encode one bucket as Relay's store service writes it to ``ingest-metrics``."""
    message: dict[str, Any] = {
        "org_id": org_id,
        "project_id": project_id,
        "name": bucket.name,
        "type": bucket.type,
        "value": _kafka_value(bucket.type, bucket.value),
        "timestamp": bucket.timestamp,
        "tags": bucket.tags,
        "retention_days": retention_days,
    }
    if received_at is not None:
        message["received_at"] = received_at
    return _encoder.encode(message)
