"""Outcome messages for the ``outcomes`` and ``outcomes-billing`` topics (JSON)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import msgspec

from relay.kafka.topics import KafkaTopic
from relay.protocol.items import DataCategory

__all__ = ["OUTCOME_METRIC_NAMES", "DataCategory", "Outcome", "OutcomeCode", "encode_outcome",
           "format_outcome_timestamp", "outcome_code_for_metric", "outcome_topic"]  # fmt: skip


class OutcomeCode(enum.IntEnum):
    """The numeric outcome id (Relay's ``OutcomeId``)."""

    ACCEPTED = 0
    FILTERED = 1
    RATE_LIMITED = 2
    INVALID = 3
    ABUSE = 4
    CLIENT_DISCARD = 5
    CARDINALITY_LIMITED = 6

    @property
    def is_billing(self) -> bool:
        """Whether Sentry bills by this outcome; those go to the billing topic."""
        return self in (OutcomeCode.ACCEPTED, OutcomeCode.RATE_LIMITED)


class Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One outcome message; fields in Relay's order, ``None`` fields left out."""

    #: When the outcome happened, see :func:`format_outcome_timestamp`.
    timestamp: str
    org_id: int | None = None
    project_id: int
    #: The DSN's project key id.
    key_id: int | None = None
    outcome: int
    #: The discard, filter or rate limit reason code.
    reason: str | None = None
    event_id: str | None = None
    #: The client's IP address.
    remote_addr: str | None = None
    #: Which relay emitted the outcome (``outcomes.source`` in the config).
    source: str | None = None
    category: int | None = None
    #: Number of items, or bytes for byte-counted categories.
    quantity: int | None = None


_ENCODER = msgspec.json.Encoder()


def encode_outcome(outcome: Outcome) -> bytes:
    """Encode an outcome as compact JSON."""
    return _ENCODER.encode(outcome)


def format_outcome_timestamp(when: datetime | float | None = None) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: ``2024-01-01T00:00:00.000000Z``.

    ``when`` is a datetime (naive ones are taken as UTC), seconds since the epoch, or
    ``None`` for now.
    """
    if when is None:
        moment = datetime.now(UTC)
    elif isinstance(when, datetime):
        moment = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(when, UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def outcome_topic(outcome: int) -> KafkaTopic:
    """``outcomes-billing`` for accepted and rate-limited outcomes, else ``outcomes``."""
    if outcome in (OutcomeCode.ACCEPTED, OutcomeCode.RATE_LIMITED):
        return KafkaTopic.OUTCOMES_BILLING
    return KafkaTopic.OUTCOMES


#: The counter MRI of each outcome id: how outcomes travel between relays as metric buckets.
OUTCOME_METRIC_NAMES: dict[int, str] = {
    OutcomeCode.ACCEPTED: "c:outcomes/accepted@none",
    OutcomeCode.FILTERED: "c:outcomes/filtered@none",
    OutcomeCode.RATE_LIMITED: "c:outcomes/rate_limited@none",
    OutcomeCode.INVALID: "c:outcomes/invalid@none",
    OutcomeCode.ABUSE: "c:outcomes/abuse@none",
    OutcomeCode.CLIENT_DISCARD: "c:outcomes/client_discard@none",
    OutcomeCode.CARDINALITY_LIMITED: "c:outcomes/cardinality_limited@none",
}
_CODE_BY_METRIC = {name: code for code, name in OUTCOME_METRIC_NAMES.items()}


def outcome_code_for_metric(name: str) -> int | None:
    """The outcome id an outcome bucket's MRI stands for, or ``None`` for other metrics."""
    return _CODE_BY_METRIC.get(name)
