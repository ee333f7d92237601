"""Check-in messages for ``ingest-monitors`` (msgpack)."""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

import msgpack
import msgspec

from relay.kafka.keys import partition_key_for


def encode_check_in_message(
    *, payload: bytes, project_id: int, start_time: int, sdk: str | None, retention_days: int
) -> bytes:
    """Encode a ``check_in`` message as Relay's store service writes it.

    ``payload`` is the check-in JSON, ``start_time`` the receipt time in whole seconds and
    ``sdk`` the client's ``sentry_client`` string. The message carries both Relay's ``type``
    tag and the ``message_type`` discriminant that Sentry's monitors consumer reads.
    """
    return msgpack.packb(
        {
            "type": "check_in",
            "message_type": "check_in",
            "payload": bytes(payload),
            "start_time": start_time,
            "sdk": sdk,
            "project_id": project_id,
            "retention_days": retention_days,
        },
        use_bin_type=True,
    )


def check_in_key(routing_hint: object, org_id: int) -> bytes | None:
    """The partition key of a check-in: its ``routing_hint`` item header mixed with the org.

    Sentry sends the check-ins of one monitor to one partition this way; without a hint
    (or with an invalid one) the message is unkeyed.
    """
    if not isinstance(routing_hint, str):
        return None
    try:
        hint = uuid.UUID(routing_hint)
    except ValueError:
        return None
    return partition_key_for(hint, org_id)


class InvalidCheckIn(ValueError):
    """The check-in cannot be stored; it gets an ``invalid_check_in`` outcome."""


SLUG_LENGTH = 50
ENVIRONMENT_LENGTH = 64
_STATUSES = frozenset({"ok", "error", "in_progress", "unknown"})
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sentry.io/crons/#did")
_FIELDS = ("check_in_id", "monitor_slug", "status", "environment", "duration",
           "monitor_config", "contexts")  # fmt: skip
_json = msgspec.json.Encoder()


def normalize_check_in(payload: bytes) -> tuple[bytes, dict[str, Any]]:
    """Validate and normalize a check-in as Relay's monitors crate does.

    The id is written as 32 hex digits (nil when absent), the slug is cut to 50
    characters, ``missed`` (computed by Sentry only) becomes ``unknown``, the duration is a
    float. Returns the new payload and the parsed check-in; raises :class:`InvalidCheckIn`.
    """
    try:
        data = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        raise InvalidCheckIn("invalid json") from None
    if not isinstance(data, dict):
        raise InvalidCheckIn("not an object")
    raw_id = data.get("check_in_id")
    try:
        check_in_id = uuid.UUID(raw_id).hex if raw_id is not None else uuid.UUID(int=0).hex
    except (ValueError, TypeError, AttributeError):
        raise InvalidCheckIn("invalid check_in_id") from None
    slug = data.get("monitor_slug", "")
    status = data.get("status")
    if not isinstance(slug, str) or not isinstance(status, str):
        raise InvalidCheckIn("invalid slug or status")
    slug = slug[:SLUG_LENGTH]
    if not slug:
        raise InvalidCheckIn("empty slug")
    status = status if status in _STATUSES else "unknown"
    out: dict[str, Any] = {"check_in_id": check_in_id, "monitor_slug": slug, "status": status}
    environment = data.get("environment")
    if environment is not None:
        if not isinstance(environment, str) or len(environment) > ENVIRONMENT_LENGTH:
            raise InvalidCheckIn("invalid environment")
        out["environment"] = environment
    duration = data.get("duration")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise InvalidCheckIn("invalid duration")
        out["duration"] = float(duration)
    for name in ("monitor_config", "contexts"):
        value = data.get(name)
        if value is not None:
            if not isinstance(value, dict):
                raise InvalidCheckIn(f"invalid {name}")
            out[name] = value
    for name in sorted(data):
        if name not in _FIELDS:
            out[name] = data[name]
    return _json.encode(out), out


def slugify_monitor_slug(slug: str) -> str:
    """Sentry's ``slugify_monitor_slug``: Django's ``slugify``, cut to 50, ``-`` stripped."""
    ascii_slug = unicodedata.normalize("NFKD", slug).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^\w\s-]", "", ascii_slug.lower())
    dashed = re.sub(r"[-\s]+", "-", cleaned).strip("-_")
    return dashed[:SLUG_LENGTH].strip("-")


def routing_hint(check_in: dict[str, Any], project_id: int) -> uuid.UUID:
    """The check-in's partition hint: one monitor and environment, one partition."""
    environment = check_in.get("environment") or "production"
    slug = slugify_monitor_slug(str(check_in.get("monitor_slug", "")))
    return uuid.uuid5(_NAMESPACE, f"{project_id}:{slug}:{environment}")
