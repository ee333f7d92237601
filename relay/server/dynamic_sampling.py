"""Dynamic sampling of transactions on managed relays (POP and processing).

Gathers what :func:`relay.sampling.sampling_decision` needs from the request: the project's
and the trace root project's ``sampling`` configs, the normalized transaction and the
envelope's DSC. A transaction that is sampled out loses its indexed payload (outcome
``filtered``, reason ``Sampled:<rule categories>``) but still counts for billing: the
relay emits (processing) or forwards as usage metrics (POP) its total counts. Its
profile stays, marked ``sampled: false``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay.filters import MAX_GENERIC_FILTERS_VERSION
from relay.filters.event import EventView
from relay.protocol.envelope import Envelope
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.sampling import parse_sampling_config, sampling_decision, trace_sampled

__all__ = [
    "SampledOut",
    "StateLookup",
    "filters_supported",
    "indexed_quantities",
    "mark_profiles_unsampled",
    "may_sample",
    "sampled_out_reason",
    "span_count",
    "tag_error_sampled",
    "total_quantities",
]

#: Looks up a cached project state by public key (None while unknown).
StateLookup = Callable[[str], ProjectState | None]


@dataclass(frozen=True)
class SampledOut:
    """A transaction dynamic sampling dropped: the outcome reason and its span count."""

    reason: str
    #: Spans the transaction counts for, itself (its segment span) included.
    spans: int


def _root_state(
    envelope: Envelope, own_key: str, state: ProjectState, lookup: StateLookup | None
) -> ProjectState | None:
    """The trace root project's state (the envelope's own when it started the trace)."""
    trace = envelope.trace
    if trace is None:
        return None
    key = trace.get("public_key")
    if not isinstance(key, str):
        return None
    if key == own_key:
        return state
    root = lookup(key) if lookup is not None else None
    if root is None or root.disabled:
        return None
    return root


def may_sample(
    envelope: Envelope, own_key: str, state: ProjectState, lookup: StateLookup | None
) -> bool:
    """Cheap pre-check: does any sampling config apply (else the event is not decoded)?"""
    if state.config.get("sampling") is not None:
        return True
    root = _root_state(envelope, own_key, state, lookup)
    return root is not None and root.config.get("sampling") is not None


def sampled_out_reason(
    event: Mapping[str, Any],
    envelope: Envelope,
    own_key: str,
    state: ProjectState,
    lookup: StateLookup | None,
    *,
    processing: bool,
    client_ip: str | None = None,
) -> str | None:
    """The outcome reason when sampling drops this normalized transaction, else None."""
    config = parse_sampling_config(state.config.get("sampling"))
    root = _root_state(envelope, own_key, state, lookup)
    root_config = parse_sampling_config(root.config.get("sampling")) if root else None
    match = sampling_decision(
        processing=processing,
        config=config,
        event=EventView(event, client_ip),
        event_payload=event,
        root_config=root_config,
        dsc=envelope.trace,
    )
    if match is None or match.keep:
        return None
    return match.reason


def span_count(event: Mapping[str, Any]) -> int:
    """The spans a transaction counts for: its children plus itself."""
    spans = event.get("spans")
    return 1 + (len(spans) if isinstance(spans, list) else 0)


def indexed_quantities(spans: int) -> list[tuple[DataCategory, int]]:
    """What a sampled-out transaction loses: its indexed (stored) categories."""
    return [(DataCategory.TRANSACTION_INDEXED, 1), (DataCategory.SPAN_INDEXED, spans)]


def total_quantities(spans: int) -> list[tuple[DataCategory, int]]:
    """What it still counts for (billing): the total categories."""
    return [(DataCategory.TRANSACTION, 1), (DataCategory.SPAN, spans)]


def mark_profiles_unsampled(envelope: Envelope) -> None:
    """The profiles of a sampled-out transaction are kept as standalone, unsampled ones."""
    for item in envelope.items:
        if item.type == ItemType.PROFILE:
            item.headers["sampled"] = False


def _version(section: Any) -> Any:
    return section.get("version") if isinstance(section, Mapping) else None


def filters_supported(state: ProjectState, global_config: Mapping[str, Any] | None) -> bool:
    """Whether this relay could run every inbound filter (generic filter versions it knows).

    When it could not, a newer relay upstream decides on filtering, and Relay leaves the
    sampling decision (which must come after filtering) to it too.
    """
    settings = state.config.get("filterSettings")
    project = _version(settings.get("generic")) if isinstance(settings, Mapping) else None
    global_version = _version((global_config or {}).get("filters"))
    return all(
        not isinstance(v, int) or v <= MAX_GENERIC_FILTERS_VERSION
        for v in (project, global_version)
    )


def tag_error_sampled(
    event: dict[str, Any],
    envelope: Envelope,
    own_key: str,
    state: ProjectState,
    lookup: StateLookup | None,
) -> None:
    """Tag an error with whether its trace is kept (``contexts.trace.sampled``), as the
    processing relay does; a value set by an earlier hop is left alone."""
    root = _root_state(envelope, own_key, state, lookup)
    if root is None:
        return
    sampled = trace_sampled(parse_sampling_config(root.config.get("sampling")), envelope.trace)
    if sampled is None:
        return
    contexts = event.get("contexts")
    if contexts is None:
        contexts = event["contexts"] = {}
    if not isinstance(contexts, dict):
        return
    trace = contexts.get("trace")
    if trace is None:
        trace = contexts["trace"] = {"type": "trace"}
    if isinstance(trace, dict) and trace.get("sampled") is None:
        trace["sampled"] = sampled
