"""Full (processing-relay) event normalization: the order of Relay's ``normalize_event``."""

from __future__ import annotations

from typing import Any

from relay.normalize import (
    breakdowns,
    contexts,
    defaults,
    logentry,
    measurements,
    request,
    security_report,
    spans,
    stacktrace,
    tags,
    user,
    useragent,
)
from relay.normalize.clock_drift import correct_clock_drift
from relay.normalize.config import NormalizationConfig
from relay.normalize.durations import positive_millis
from relay.normalize.meta import Meta, add_error, child, copy_meta
from relay.normalize.release import is_valid_environment, is_valid_release
from relay.normalize.schema import EVENT
from relay.normalize.serialize import finish_event
from relay.normalize.timestamps import (
    InvalidTransaction,
    check_stale,
    validate_timestamps,
    validate_transaction,
)
from relay.normalize.trimming import trim_event

__all__ = ["InvalidTransaction", "normalize_event"]


def parse_event(payload: dict[str, Any]) -> tuple[dict[str, Any], Meta]:
    """Convert a JSON event to its typed form; returns the event and its meta tree."""
    incoming = payload.get("_meta")
    holder: Meta = {}
    if type(incoming) is dict:
        payload = {k: v for k, v in payload.items() if k != "_meta"}
        holder["e"] = copy_meta(incoming, payload)
    event = EVENT.conv(payload, holder, "e")
    return event, holder.setdefault("e", {})


def _validate_attribute(event: dict[str, Any], meta: Meta, key: str, valid: Any) -> None:
    value = event.get(key)
    if value is not None and not valid(value):
        add_error(child(meta, key), "invalid_data", value)
        event[key] = None


def _normalize_measurements(
    event: dict[str, Any], meta: Meta, config: NormalizationConfig, is_transaction: bool
) -> None:
    """Measurements, with the configured limits compiled only when there are some."""
    if not is_transaction or event.get("measurements") is None:
        measurements.normalize_measurements(event, meta, None, None)
        return
    limits = None
    if config.measurements is not None:
        project, global_ = config.measurements
        limits = measurements.compile_config(project, global_, config.max_name_and_unit_len)
    start, end = event.get("start_timestamp"), event.get("timestamp")
    duration = positive_millis(start, end) if start is not None and end is not None else None
    measurements.normalize_measurements(event, meta, limits, duration)
    measurements.backfill_app_vitals_start(event)


def _apply(event: dict[str, Any], meta: Meta, config: NormalizationConfig) -> None:
    is_transaction = event.get("type") == "transaction"
    if is_transaction:
        defaults.normalize_transaction(event)
    client_ip = config.client_ip if config.infer_ip_address else None
    # Security reports first: their user IP and User-Agent header feed what follows.
    security_report.normalize_security_report(event, client_ip, config.user_agent)
    user.normalize_ip_addresses(event, meta, client_ip)
    if config.geoip is not None:
        user.normalize_user_geo(event, config.geoip, config.client_ip)
    _validate_attribute(event, meta, "release", is_valid_release)
    _validate_attribute(event, meta, "environment", is_valid_environment)
    user.normalize_user(event)
    logentry.normalize_logentry(event, meta)
    defaults.normalize_breadcrumbs(event)
    defaults.normalize_dist(event, meta)
    tags.normalize_event_tags(event, meta)
    tags.remove_device_class(event)
    stacktrace.normalize_stacktraces(event)
    stacktrace.normalize_exceptions(event, meta)
    if config.normalize_user_agent:
        useragent.normalize_user_agent(event)
    _normalize_measurements(event, meta, config, is_transaction)
    if config.breakdowns is not None:
        breakdowns.normalize_breakdowns(event, meta, config.breakdowns)
    defaults.normalize_default_attributes(event, meta, config)
    if config.replay_id is not None:
        ctxs = event.get("contexts")
        if type(ctxs) is not dict:
            ctxs = event["contexts"] = {}
        ctxs["replay"] = {"type": "replay", "replay_id": config.replay_id}
    request.normalize_request(event, meta)
    if config.force_trace_context and event.get("type") != "transaction":
        defaults.force_trace_context(event)
    contexts.normalize_contexts(event)
    trace = defaults.trace_context(event)
    if config.normalize_spans and event.get("type") == "transaction":
        spans.normalize_app_start_spans(event)
        spans.compute_exclusive_times(event, trace)
    if trace is not None:
        trace["client_sample_rate"] = config.client_sample_rate


def normalize_event(payload: dict[str, Any], config: NormalizationConfig) -> dict[str, Any]:
    """Validate and normalize ``payload`` like a processing Relay; returns the new event.

    Raises :class:`InvalidTransaction` for transactions Relay rejects outright.
    """
    event, meta = parse_event(payload)
    if not config.is_renormalize:
        received_ns = config.received_ns()
        if config.sent_at_ns is not None:
            # Before the range checks: a corrected timestamp is no longer out of range.
            correct_clock_drift(event, meta, config.sent_at_ns, received_ns)
        validate_timestamps(
            event,
            meta,
            received_ns,
            config.max_secs_in_past,
            config.max_secs_in_future,
        )
        check_stale(event, meta)
        if event.get("type") == "transaction":
            validate_transaction(event, meta, config.transaction_timestamp_range)
        _apply(event, meta, config)
    if config.enable_trimming:
        trim_event(EVENT, event, meta)
    remove_other = config.remove_other
    if remove_other is None:
        remove_other = not config.is_renormalize
    emit_errors = config.emit_event_errors
    if emit_errors is None:
        emit_errors = not config.is_renormalize
    return finish_event(EVENT, event, meta, remove_other=remove_other, emit_errors=emit_errors)
