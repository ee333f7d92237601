"""Session items: parsing, Relay's validation and normalization, and metric extraction.

``session`` items carry one update of one session, ``sessions`` items pre-aggregated
counts per start time. Both become three metrics (Relay's ``sessions`` namespace):

- ``c:sessions/session@none`` counts sessions by ``session.status`` (``init``,
  ``errored_preaggr``, ``abnormal``, ``unhandled``, ``crashed``),
- ``s:sessions/user@none`` holds distinct user ids, tagged with a status when the
  user had an errored, abnormal, unhandled or crashed session,
- ``s:sessions/error@none`` holds ids of errored sessions.

All carry ``release``, and ``environment`` and ``sdk`` when known. The pipeline per
envelope is :func:`parse_sessions` -> (inbound filters, quotas: the server's job) ->
:func:`normalize_sessions` -> :func:`extract_sessions_metrics`; :func:`process_sessions`
runs all three. Invalid sessions are dropped without outcomes, as Relay does.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import msgspec

from relay.metrics.bucket import Bucket, BucketMetadata, CounterBucket, SetBucket, hash_set_value

# Release and environment rules are shared with event normalization (sentry-release-parser).
from relay.normalize.release import is_valid_environment, is_valid_release

__all__ = [
    "InvalidSession",
    "ParsedSessions",
    "SessionAggregateItem",
    "SessionAggregates",
    "SessionAttributes",
    "SessionContext",
    "SessionUpdate",
    "extract_session_metrics",
    "extract_sessions_metrics",
    "normalize_session_aggregates",
    "normalize_session_update",
    "normalize_sessions",
    "parse_session_aggregates",
    "parse_session_update",
    "parse_sessions",
    "process_sessions",
    "session_metrics_enabled",
    "should_extract_abnormal_mechanism",
    "should_extract_sessions",
]

log = logging.getLogger(__name__)

#: ``sessionMetrics.version`` values this relay can extract (Relay's SESSION_EXTRACT_VERSION).
SESSION_EXTRACT_VERSION: Final = 3
_ABNORMAL_MECHANISM_VERSION: Final = 2
#: Relay corrects a client clock only when it is off by at least this much.
MINIMUM_CLOCK_DRIFT: Final = timedelta(minutes=55)

SESSION_METRIC: Final = "c:sessions/session@none"
USER_METRIC: Final = "s:sessions/user@none"
ERROR_METRIC: Final = "s:sessions/error@none"

_ABNORMAL_MECHANISMS: Final = frozenset({"anr_foreground", "anr_background"})
_NOT_ERRORS: Final = frozenset({"ok", "exited"})

U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
# msgspec bounds are limited to int64; u64 values beyond that are vanishingly rare.
U64 = Annotated[int, msgspec.Meta(ge=0)]


class InvalidSession(ValueError):
    """The session item is dropped (Relay's ``sessions::Error::Invalid``; no outcome)."""


class SessionAttributes(msgspec.Struct, omit_defaults=True):
    """``attrs``: what every update of the session shares. ``release`` is required."""

    release: str
    environment: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


class _RawUpdate(msgspec.Struct):
    started: str
    attrs: SessionAttributes
    sid: str | None = None
    did: str | None = None
    seq: U64 | None = None
    init: bool = False
    timestamp: str | None = None
    status: str = "ok"
    errors: U64 = 0
    abnormal_mechanism: str | None = None


class _RawAggregateItem(msgspec.Struct):
    started: str
    did: str | None = None
    exited: U32 = 0
    errored: U32 = 0
    abnormal: U32 = 0
    unhandled: U32 = 0
    crashed: U32 = 0


class _RawAggregates(msgspec.Struct):
    attrs: SessionAttributes
    aggregates: list[_RawAggregateItem] = []


class SessionUpdate(msgspec.Struct, kw_only=True):
    """One parsed ``session`` item (Relay's ``SessionUpdate``)."""

    session_id: uuid.UUID
    distinct_id: str | None
    sequence: int
    init: bool
    timestamp: datetime
    started: datetime
    status: str
    errors: int
    attributes: SessionAttributes
    #: ``none`` unless ``anr_foreground`` / ``anr_background``.
    abnormal_mechanism: str = "none"


class SessionAggregateItem(msgspec.Struct, kw_only=True):
    """Counts of sessions that started in the same second (one ``aggregates`` entry)."""

    started: datetime
    distinct_id: str | None = None
    exited: int = 0
    errored: int = 0
    abnormal: int = 0
    unhandled: int = 0
    crashed: int = 0


class SessionAggregates(msgspec.Struct, kw_only=True):
    """One parsed ``sessions`` item."""

    aggregates: list[SessionAggregateItem]
    attributes: SessionAttributes


class SessionContext(msgspec.Struct, frozen=True, kw_only=True):
    """What normalization and extraction need from the envelope and the configs."""

    #: When this relay received the envelope (timezone-aware).
    received_at: datetime
    #: The envelope's ``sent_at`` header, for clock drift correction.
    sent_at: datetime | None = None
    #: ``sentry_client`` of the request (becomes the ``sdk`` tag).
    client: str | None = None
    #: Client IP, replacing ``{{auto}}`` in ``attrs.ip_address``.
    client_addr: str | None = None
    #: ``processing.max_session_secs_in_past`` (5 days).
    max_session_secs_in_past: int = 5 * 24 * 3600
    #: ``processing.max_secs_in_future`` (60 s).
    max_secs_in_future: int = 60
    #: From the project's ``sessionMetrics`` (see :func:`should_extract_abnormal_mechanism`).
    extract_abnormal_mechanism: bool = False


class ParsedSessions(msgspec.Struct):
    """The session updates and aggregates of one envelope, after parsing."""

    updates: list[SessionUpdate] = msgspec.field(default_factory=list)
    aggregates: list[SessionAggregates] = msgspec.field(default_factory=list)
    #: Items (or aggregate entries) dropped as invalid so far.
    invalid: int = 0

    @property
    def quantity(self) -> int:
        """Sessions for quotas (``DataCategory.SESSION``): updates plus aggregate entries."""
        return len(self.updates) + sum(len(a.aggregates) for a in self.aggregates)


# --- project config -------------------------------------------------------------------


def _session_metrics_version(project_config: Mapping[str, Any]) -> int:
    settings = project_config.get("sessionMetrics")
    if not isinstance(settings, Mapping):
        return 0
    version = settings.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def session_metrics_enabled(project_config: Mapping[str, Any]) -> bool:
    """``sessionMetrics.version`` is one this relay knows how to extract (1..3)."""
    return 0 < _session_metrics_version(project_config) <= SESSION_EXTRACT_VERSION


def should_extract_abnormal_mechanism(project_config: Mapping[str, Any]) -> bool:
    """The ``abnormal_mechanism`` user tag exists from ``sessionMetrics.version`` 2 on."""
    return _session_metrics_version(project_config) >= _ABNORMAL_MECHANISM_VERSION


def should_extract_sessions(project_config: Mapping[str, Any], *, processing: bool) -> bool:
    """Whether this relay turns session items into metrics or forwards them unchanged.

    Processing relays always extract (not extracting would lose the sessions); other
    relays only when the project enables ``sessionMetrics``.
    """
    return processing or session_metrics_enabled(project_config)


# --- parsing --------------------------------------------------------------------------

_update_decoder = msgspec.json.Decoder(_RawUpdate)
_aggregates_decoder = msgspec.json.Decoder(_RawAggregates)


def _parse_datetime(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidSession(f"invalid datetime {raw!r}") from None
    if value.tzinfo is None:
        # chrono's DateTime<Utc> parser requires an offset.
        raise InvalidSession(f"datetime without offset {raw!r}")
    return value.astimezone(UTC)


def _check_ip(attrs: SessionAttributes) -> None:
    ip = attrs.ip_address
    if ip is not None and ip != "{{auto}}":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidSession(f"invalid ip address {ip!r}") from None


def parse_session_update(payload: bytes, *, now: datetime | None = None) -> SessionUpdate:
    """Parse a ``session`` item as Relay does; raise :class:`InvalidSession`.

    Missing ``sid`` gets a random id, missing ``timestamp`` the current time and missing
    ``seq`` the current time in milliseconds. Unknown abnormal mechanisms become ``none``.
    """
    try:
        raw = _update_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidSession(str(exc)) from None
    _check_ip(raw.attrs)
    if raw.sid is None:
        session_id = uuid.uuid4()
    else:
        try:
            session_id = uuid.UUID(raw.sid)
        except ValueError:
            raise InvalidSession(f"invalid sid {raw.sid!r}") from None
    current = now or datetime.now(UTC)
    mechanism = raw.abnormal_mechanism
    return SessionUpdate(
        session_id=session_id,
        distinct_id=raw.did,
        sequence=raw.seq if raw.seq is not None else int(time.time() * 1000),
        init=raw.init,
        timestamp=_parse_datetime(raw.timestamp) if raw.timestamp is not None else current,
        started=_parse_datetime(raw.started),
        status=raw.status,
        errors=raw.errors,
        attributes=raw.attrs,
        abnormal_mechanism=mechanism if mechanism in _ABNORMAL_MECHANISMS else "none",
    )


def parse_session_aggregates(payload: bytes) -> SessionAggregates:
    """Parse a ``sessions`` item; raise :class:`InvalidSession`."""
    try:
        raw = _aggregates_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidSession(str(exc)) from None
    _check_ip(raw.attrs)
    items = [
        SessionAggregateItem(
            started=_parse_datetime(item.started),
            distinct_id=item.did,
            exited=item.exited,
            errored=item.errored,
            abnormal=item.abnormal,
            unhandled=item.unhandled,
            crashed=item.crashed,
        )
        for item in raw.aggregates
    ]
    return SessionAggregates(aggregates=items, attributes=raw.attrs)


def parse_sessions(
    updates: Iterable[bytes], aggregates: Iterable[bytes], *, now: datetime | None = None
) -> ParsedSessions:
    """Parse the payloads of an envelope's ``session`` and ``sessions`` items."""
    parsed = ParsedSessions()
    for payload in updates:
        try:
            parsed.updates.append(parse_session_update(payload, now=now))
        except InvalidSession as exc:
            log.debug("invalid session dropped: %s", exc)
            parsed.invalid += 1
    for payload in aggregates:
        try:
            parsed.aggregates.append(parse_session_aggregates(payload))
        except InvalidSession as exc:
            log.debug("invalid session aggregates dropped: %s", exc)
            parsed.invalid += 1
    return parsed


# --- normalization --------------------------------------------------------------------


def _clock_drift(ctx: SessionContext) -> timedelta | None:
    if ctx.sent_at is None:
        return None
    drift = ctx.received_at - ctx.sent_at
    # chrono's num_seconds truncates toward zero.
    if abs(int(drift.total_seconds())) >= MINIMUM_CLOCK_DRIFT.total_seconds():
        return drift
    return None


def _check_timestamp(ts: datetime, ctx: SessionContext) -> None:
    if ctx.received_at - ts > timedelta(seconds=ctx.max_session_secs_in_past):
        raise InvalidSession("session is too old")
    if ts - ctx.received_at > timedelta(seconds=ctx.max_secs_in_future):
        raise InvalidSession("session is in the future")


def _normalize_attributes(attrs: SessionAttributes, ctx: SessionContext) -> None:
    if not is_valid_release(attrs.release):
        raise InvalidSession(f"invalid release {attrs.release!r}")
    if attrs.environment is not None and not is_valid_environment(attrs.environment):
        attrs.environment = None
    if attrs.ip_address == "{{auto}}":
        attrs.ip_address = ctx.client_addr


def normalize_session_update(update: SessionUpdate, ctx: SessionContext) -> None:
    """Correct clock drift, order timestamps, check their age and the release, in place."""
    drift = _clock_drift(ctx)
    if drift is not None:
        update.started += drift
        update.timestamp += drift
    if update.timestamp < update.started:
        update.timestamp = update.started
    _check_timestamp(update.timestamp, ctx)
    _check_timestamp(update.started, ctx)
    _normalize_attributes(update.attributes, ctx)


def normalize_session_aggregates(aggregates: SessionAggregates, ctx: SessionContext) -> int:
    """Normalize in place; entries outside the accepted time range are removed.

    Returns the number of removed entries; raises :class:`InvalidSession` when the
    release is invalid (the whole item is dropped).
    """
    drift = _clock_drift(ctx)
    kept: list[SessionAggregateItem] = []
    for item in aggregates.aggregates:
        if drift is not None:
            item.started += drift
        try:
            _check_timestamp(item.started, ctx)
        except InvalidSession:
            continue
        kept.append(item)
    removed = len(aggregates.aggregates) - len(kept)
    aggregates.aggregates = kept
    _normalize_attributes(aggregates.attributes, ctx)
    return removed


def normalize_sessions(parsed: ParsedSessions, ctx: SessionContext) -> None:
    """Normalize every parsed session; invalid ones are removed and counted."""
    updates: list[SessionUpdate] = []
    for update in parsed.updates:
        try:
            normalize_session_update(update, ctx)
        except InvalidSession as exc:
            log.debug("invalid session dropped: %s", exc)
            parsed.invalid += 1
            continue
        updates.append(update)
    parsed.updates = updates
    kept: list[SessionAggregates] = []
    for aggregates in parsed.aggregates:
        try:
            parsed.invalid += normalize_session_aggregates(aggregates, ctx)
        except InvalidSession as exc:
            log.debug("invalid session aggregates dropped: %s", exc)
            parsed.invalid += len(aggregates.aggregates)
            continue
        kept.append(aggregates)
    parsed.aggregates = kept


# --- extraction -----------------------------------------------------------------------


def _is_nil_uuid(value: str) -> bool:
    try:
        return uuid.UUID(value).int == 0
    except ValueError:
        return False


class _Emitter:
    """Builds the buckets of one session (or aggregate entry) with shared tags."""

    __slots__ = ("common", "metadata", "out", "timestamp")

    def __init__(
        self, out: list[Bucket], timestamp: int, common: dict[str, str], received_at: int
    ) -> None:
        self.out = out
        self.timestamp = timestamp
        self.common = common
        self.metadata = BucketMetadata(merges=1, received_at=received_at)

    def sessions(self, count: int, status: str) -> None:
        self.out.append(
            CounterBucket(
                timestamp=self.timestamp,
                width=0,
                name=SESSION_METRIC,
                tags={**self.common, "session.status": status},
                metadata=self.metadata,
                value=float(count),
            )
        )

    def member(self, name: str, member: str, extra: dict[str, str] | None = None) -> None:
        self.out.append(
            SetBucket(
                timestamp=self.timestamp,
                width=0,
                name=name,
                tags={**self.common, **extra} if extra else dict(self.common),
                metadata=self.metadata,
                value=[hash_set_value(member)],
            )
        )


def extract_session_metrics(
    attributes: SessionAttributes,
    session: SessionUpdate | SessionAggregateItem,
    *,
    client: str | None,
    received_at: int,
    extract_abnormal_mechanism: bool,
    out: list[Bucket] | None = None,
) -> list[Bucket]:
    """The buckets of one update or aggregate entry, in Relay's order (appended to ``out``)."""
    target: list[Bucket] = [] if out is None else out
    started = session.started.timestamp()
    if started < 0:
        log.error("invalid session started timestamp: %s", session.started)
        return target
    common = {"release": attributes.release}
    if attributes.environment is not None:
        common["environment"] = attributes.environment
    if client is not None:
        common["sdk"] = client
    emit = _Emitter(target, int(started), common, received_at)

    did = session.distinct_id
    user = did if did is not None and not _is_nil_uuid(did) else None

    if isinstance(session, SessionUpdate):
        total = 1 if session.init else 0
        status = session.status
        abnormal = 1 if status == "abnormal" else 0
        unhandled = 1 if status == "unhandled" else 0
        crashed = 1 if status == "crashed" else 0
        errored_session: uuid.UUID | None = None
        if session.errors > 0 or status not in _NOT_ERRORS:
            errored_session = session.session_id
        errors_aggregated = 0
        mechanism = session.abnormal_mechanism
    else:
        abnormal, unhandled, crashed = session.abnormal, session.unhandled, session.crashed
        total = session.exited + session.errored + abnormal + unhandled + crashed
        errored_session = None
        errors_aggregated = session.errored + abnormal + unhandled + crashed
        mechanism = "none"

    # Every first update counts as "init": the baseline for adoption and crash rates.
    if total > 0:
        emit.sessions(total, "init")

    errored = errored_session is not None or errors_aggregated > 0
    if errored_session is not None:
        emit.member(ERROR_METRIC, str(errored_session))
    elif errors_aggregated > 0:
        emit.sessions(errors_aggregated, "errored_preaggr")
    if user is not None:
        # Healthy users are |users| - |users{session.status:errored}|, so users of
        # sessions without errors carry no status.
        emit.member(USER_METRIC, user, {"session.status": "errored"} if errored else None)

    if abnormal > 0:
        emit.sessions(abnormal, "abnormal")
        if user is not None:
            extra = {"session.status": "abnormal"}
            if extract_abnormal_mechanism and mechanism != "none":
                extra["abnormal_mechanism"] = mechanism
            emit.member(USER_METRIC, user, extra)
    if unhandled > 0:
        emit.sessions(unhandled, "unhandled")
        if user is not None:
            emit.member(USER_METRIC, user, {"session.status": "unhandled"})
    if crashed > 0:
        emit.sessions(crashed, "crashed")
        if user is not None:
            emit.member(USER_METRIC, user, {"session.status": "crashed"})
    return target


def extract_sessions_metrics(parsed: ParsedSessions, ctx: SessionContext) -> list[Bucket]:
    """The buckets of all (normalized) sessions of an envelope."""
    received_at = int(ctx.received_at.timestamp())
    out: list[Bucket] = []
    for update in parsed.updates:
        extract_session_metrics(
            update.attributes,
            update,
            client=ctx.client,
            received_at=received_at,
            extract_abnormal_mechanism=ctx.extract_abnormal_mechanism,
            out=out,
        )
    for aggregates in parsed.aggregates:
        for item in aggregates.aggregates:
            extract_session_metrics(
                aggregates.attributes,
                item,
                client=ctx.client,
                received_at=received_at,
                extract_abnormal_mechanism=ctx.extract_abnormal_mechanism,
                out=out,
            )
    return out


def process_sessions(
    updates: Iterable[bytes],
    aggregates: Iterable[bytes],
    ctx: SessionContext,
    *,
    keep: Callable[[SessionAttributes], bool] | None = None,
) -> tuple[list[Bucket], ParsedSessions]:
    """Parse, filter (``keep`` returns ``False`` to drop), normalize and extract.

    Returns the buckets and the parsed sessions (whose ``invalid`` counts the drops).
    Quotas for the ``session`` category must be enforced by the caller before
    extraction, on ``parsed.quantity``; use the three steps separately for that.
    """
    parsed = parse_sessions(updates, aggregates, now=ctx.received_at)
    if keep is not None:
        parsed.updates = [u for u in parsed.updates if keep(u.attributes)]
        parsed.aggregates = [a for a in parsed.aggregates if keep(a.attributes)]
    normalize_sessions(parsed, ctx)
    return extract_sessions_metrics(parsed, ctx), parsed
