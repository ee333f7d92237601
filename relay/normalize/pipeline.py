"""How a relay normalizes an event item, depending on its mode.

Relay runs the same normalization on every hop (``relay-server``'s ``normalize``), but only
a processing relay does it "fully": a POP (managed, non-processing) relay keeps unknown
fields and emits no ``errors`` entries, so the processing relay can still validate them.
"""

from __future__ import annotations

import time
from typing import Any, Final

from relay.normalize.config import NormalizationConfig
from relay.normalize.event import normalize_event
from relay.normalize.geoip import GeoIpLookup
from relay.normalize.measurements import MEASUREMENT_MRI_OVERHEAD

#: Relay's default ``max_secs_in_future`` (``limits``-independent, 1 minute).
DEFAULT_MAX_SECS_IN_FUTURE: Final = 60
#: Event retention assumed when the project config says nothing (Relay's default, days).
DEFAULT_RETENTION_DAYS: Final = 90
#: The metrics aggregator's defaults, which bound transaction and span timestamps.
DEFAULT_METRICS_SECS_IN_PAST: Final = 5 * 24 * 3600
DEFAULT_METRICS_SECS_IN_FUTURE: Final = 60
DEFAULT_METRIC_NAME_LENGTH: Final = 200


def normalize_for_relay(
    event: dict[str, Any],
    *,
    processing: bool,
    event_id: str | None,
    received_at: float,
    sent_at: float | None = None,
    project_id: int | None = None,
    key_id: str | None = None,
    client: str | None = None,
    protocol_version: str | None = None,
    client_ip: str | None = None,
    scrub_ip_addresses: bool = False,
    grouping_config: Any = None,
    retention_days: int | None = None,
    max_secs_in_future: int = DEFAULT_MAX_SECS_IN_FUTURE,
    client_sample_rate: float | None = None,
    replay_id: str | None = None,
    user_agent: str | None = None,
    measurements_config: Any = None,
    global_measurements_config: Any = None,
    breakdowns_config: Any = None,
    metrics_secs_in_past: int = DEFAULT_METRICS_SECS_IN_PAST,
    metrics_secs_in_future: int = DEFAULT_METRICS_SECS_IN_FUTURE,
    max_metric_name_length: int = DEFAULT_METRIC_NAME_LENGTH,
    geoip: GeoIpLookup | None = None,
) -> dict[str, Any]:
    """Normalize one event or transaction payload the way a relay in this mode does.

    ``processing=False`` is the POP pass (message to ``logentry.formatted``, event id,
    timestamps, defaults, but unknown fields stay and no ``errors`` are added);
    ``processing=True`` is the full pass whose output goes to Kafka. The envelope's event
    id, when given, replaces the payload's. Raises ``InvalidTransaction`` for transactions
    Relay rejects (the caller drops the item with outcome ``invalid``/``invalid_transaction``).

    ``sent_at`` (Unix seconds, the envelope header) enables clock drift correction.
    ``measurements_config``/``global_measurements_config`` are the project's and the global
    ``measurements`` sections, ``breakdowns_config`` the project's ``breakdownsV2``. The
    ``metrics_*`` limits are the metrics aggregator's: transactions must lie in its time
    window (span timestamps outside it are replaced) and measurement names fit its limit.
    ``geoip`` fills ``user.geo`` from the user's or the client's IP address.
    """
    if event_id is not None:
        event["event_id"] = event_id
    # Relay takes the window from the clock, not from the receive time.
    now = int(time.time())
    config = NormalizationConfig(
        project_id=project_id,
        client_ip=client_ip,
        infer_ip_address=not scrub_ip_addresses,
        client=client,
        key_id=key_id,
        protocol_version=protocol_version,
        grouping_config=grouping_config,
        user_agent=user_agent,
        received_at=received_at,
        sent_at_ns=None if sent_at is None else round(sent_at * 1_000_000) * 1000,
        max_secs_in_future=max_secs_in_future,
        max_secs_in_past=(retention_days or DEFAULT_RETENTION_DAYS) * 24 * 3600,
        enable_trimming=True,
        remove_other=processing,
        emit_event_errors=processing,
        normalize_user_agent=True,
        client_sample_rate=client_sample_rate,
        replay_id=replay_id,
        normalize_spans=True,
        measurements=(measurements_config, global_measurements_config),
        max_name_and_unit_len=max(0, max_metric_name_length - MEASUREMENT_MRI_OVERHEAD),
        breakdowns=breakdowns_config if isinstance(breakdowns_config, dict) else None,
        transaction_timestamp_range=(now - metrics_secs_in_past, now + metrics_secs_in_future),
        geoip=geoip,
    )
    return normalize_event(event, config)
