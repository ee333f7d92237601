"""``StoreNormalizer``: the drop-in replacement for ``sentry_relay.StoreNormalizer``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from relay.normalize.config import NormalizationConfig
from relay.normalize.event import normalize_event
from relay.normalize.primitives import parse_timestamp_str


def _parse_datetime_ns(value: Any) -> int | None:
    """RFC 3339 strings (nanosecond precision kept) or datetimes, as Unix nanoseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return round(value.timestamp() * 1_000_000) * 1000
    if isinstance(value, str):
        parsed = parse_timestamp_str(value)
        if isinstance(parsed, float):
            micros = round(parsed * 1_000_000)
            frac = value.split(".", 1)[1] if "." in value else ""
            digits = "".join(c for c in frac if c.isdigit())
            if len(digits) > 6:
                # Keep the sub-microsecond part exactly; floats cannot.
                nanos = int(digits[:9].ljust(9, "0"))
                return (micros // 1_000_000) * 1_000_000_000 + nanos
            return micros * 1000
    raise ValueError(f"invalid datetime: {value!r}")


class StoreNormalizer:
    """Normalizes events like ``sentry_relay.StoreNormalizer`` (same constructor keywords).

    ``geoip_lookup`` is accepted and ignored (no GeoIP database is bundled).
    """

    __slots__ = ("_config",)

    def __init__(self, geoip_lookup: Any = None, json_dumps: Any = None, **config: Any) -> None:
        self._config = NormalizationConfig(
            project_id=config.get("project_id"),
            client_ip=config.get("client_ip"),
            client=config.get("client"),
            key_id=config.get("key_id"),
            protocol_version=config.get("protocol_version"),
            grouping_config=config.get("grouping_config"),
            user_agent=config.get("user_agent"),
            client_hints=config.get("client_hints") or {},
            received_at_ns=_parse_datetime_ns(config.get("received_at")),
            max_secs_in_future=config.get("max_secs_in_future"),
            max_secs_in_past=config.get("max_secs_in_past"),
            enable_trimming=bool(config.get("enable_trimming")),
            is_renormalize=bool(config.get("is_renormalize")),
            remove_other=config.get("remove_other"),
            normalize_user_agent=config.get("normalize_user_agent"),
            client_sample_rate=config.get("client_sample_rate"),
            replay_id=config.get("replay_id"),
            normalize_spans=bool(config.get("normalize_spans")),
        )

    def normalize_event(
        self, event: Any = None, raw_event: Any = None, json_loads: Any = None
    ) -> dict[str, Any]:
        """Normalize one event (a dict, or its JSON as ``raw_event``) into a new dict."""
        if raw_event is not None:
            event = (json_loads or json.loads)(raw_event)
        if not isinstance(event, dict):
            raise ValueError("expected an event object")
        return normalize_event(event, self._config)
