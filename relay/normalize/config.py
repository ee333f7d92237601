"""Options of one normalization run (the subset of Relay's ``NormalizationConfig`` we honour)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from relay.normalize.geoip import GeoIpLookup


@dataclass(slots=True)
class NormalizationConfig:
    """What the caller knows about the event besides its payload.

    ``received_at``/``sent_at`` are Unix seconds; ``received_at`` defaults to now.
    ``infer_ip_address`` lets ``client_ip`` fill ``{{auto}}`` IPs (Relay's server does this;
    the Python ``StoreNormalizer`` never does).
    """

    project_id: int | None = None
    client_ip: str | None = None
    infer_ip_address: bool = False
    client: str | None = None
    key_id: str | None = None
    protocol_version: str | None = None
    grouping_config: Any = None
    user_agent: str | None = None
    client_hints: dict[str, Any] = field(default_factory=dict)
    received_at: float | None = None
    received_at_ns: int | None = None
    #: The envelope's ``sent_at`` (sender's clock), Unix nanoseconds; enables drift correction.
    sent_at_ns: int | None = None
    max_secs_in_future: int | None = None
    max_secs_in_past: int | None = None
    enable_trimming: bool = False
    is_renormalize: bool = False
    remove_other: bool | None = None
    emit_event_errors: bool | None = None
    normalize_user_agent: bool | None = None
    client_sample_rate: float | None = None
    replay_id: str | None = None
    force_trace_context: bool = True
    #: Span normalization (exclusive times, legacy app start ops) of transactions.
    normalize_spans: bool = False
    #: Project and global ``measurements`` sections; ``None`` for both keeps every measurement.
    measurements: tuple[Any, Any] | None = None
    #: Limit on a measurement's name plus unit length (metric name limits).
    max_name_and_unit_len: int | None = None
    #: The project's ``breakdownsV2``; when set, replaces the SDK's breakdowns.
    breakdowns: dict[str, Any] | None = None
    #: The GeoIP database for ``user.geo``; None: no geo lookups.
    geoip: GeoIpLookup | None = None
    #: Unix seconds ``[start, end)`` a transaction and its spans must lie in.
    transaction_timestamp_range: tuple[int, int] | None = None

    def received_ns(self) -> int:
        """Receipt time in integer nanoseconds (clock-drift arithmetic is done in ns)."""
        if self.received_at_ns is not None:
            return self.received_at_ns
        if self.received_at is not None:
            return round(self.received_at * 1_000_000) * 1000
        return time.time_ns()
