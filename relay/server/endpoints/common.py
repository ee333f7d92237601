"""What every ingestion endpoint shares: request meta, the envelope hand-off and answers.

Every endpoint turns its request into an envelope and calls :func:`handle_envelope`, which does
what Relay's ``handle_envelope`` does before queueing: an envelope without items is answered
200 and dropped, then the per-item size limits are checked (413 for the whole envelope, with an
``invalid`` outcome ``too_large:<item type>`` for each of its items), then the
:class:`~relay.server.ingest.Ingestor` takes it (project checks, forwarding or processing).
"""

from __future__ import annotations

import logging
import uuid

import msgspec
from aiohttp import web

from relay.config import Config
from relay.errors import BadRequest, InvalidEnvelope, PayloadTooLarge
from relay.protocol.envelope import Envelope, parse_envelope
from relay.protocol.limits import SizeLimits, check_envelope_size_limits
from relay.protocol.project_config import ProjectState
from relay.protocol.unknown_items import remove_unknown_items
from relay.server.ingest import Ingestor
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta, build_meta, parse_project_id, request_auth
from relay.server.uploads import UploadService

log = logging.getLogger(__name__)

__all__ = [
    "EmptyBody",
    "EndpointContext",
    "InternalEnvelope",
    "ItemTooLarge",
    "handle_envelope",
    "json_id",
    "parse_request_envelope",
    "request_meta",
    "size_limits",
    "text_event_id",
]


class EmptyBody(BadRequest):
    """The request had no body (Relay's ``BadStoreRequest::EmptyBody``)."""

    reason = "empty_body"

    def __init__(self) -> None:
        super().__init__("empty request body")


class InternalEnvelope(BadRequest):
    """A client sent item types only Relay itself creates (``integration``)."""

    reason = "internal_envelope"

    def __init__(self) -> None:
        super().__init__("envelope contains internal items")


class ItemTooLarge(PayloadTooLarge):
    """An item is over its size limit; the whole request is refused (413)."""

    def __init__(self, item_type: str) -> None:
        super().__init__(
            f"envelope exceeded size limits for type '{item_type}' "
            "(https://develop.sentry.dev/sdk/envelopes/#size-limits)"
        )
        self.item_type = item_type
        self.reason = f"too_large:{item_type}"


def size_limits(config: Config) -> SizeLimits:
    """The per-item size limits from the ``limits`` config section."""
    lim = config.limits
    return SizeLimits(
        max_event_size=int(lim.max_event_size),
        max_attachment_size=int(lim.max_attachment_size),
        max_attachment_count=lim.max_attachment_count,
        max_attachments_size=int(lim.max_attachments_size),
        max_replay_compressed_size=int(lim.max_replay_compressed_size),
        max_sessions_size=int(lim.max_sessions_size),
        max_session_count=lim.max_session_count,
        max_client_reports_size=int(lim.max_client_reports_size),
        max_client_reports_count=lim.max_client_reports_count,
        max_profile_size=int(lim.max_profile_size),
        max_check_in_size=int(lim.max_check_in_size),
        max_metric_buckets_size=int(lim.max_metric_buckets_size),
        max_log_size=int(lim.max_log_size),
        max_trace_metric_size=int(lim.max_trace_metric_size),
        max_span_size=int(lim.max_span_size),
        max_standalone_span_count=lim.max_standalone_span_count,
        max_container_size=int(lim.max_container_size),
    )


class EndpointContext:
    """What handlers need, built once per relay: config, limits and the ingestor."""

    def __init__(
        self, config: Config, ingestor: Ingestor, uploads: UploadService | None = None
    ) -> None:
        self.config = config
        self.ingestor = ingestor
        self.limits = size_limits(config)
        #: Where large files go instead of the envelope (None: nowhere, they are inlined).
        self.uploads = uploads

    @property
    def outcomes(self) -> OutcomeSink | None:
        """The ingestor's outcome recorder (older ingestors: the sink's)."""
        outcomes = getattr(self.ingestor, "outcomes", None) or getattr(
            self.ingestor.sink, "outcomes", None
        )
        return outcomes if isinstance(outcomes, OutcomeSink) else None


def request_meta(
    request: web.Request,
    *,
    envelope: Envelope | None = None,
    path_key: str | None = None,
    project_id: int | None = None,
    trusted_relay: bool = False,
) -> RequestMeta:
    """Authenticate the request and collect its meta; the project id comes from the path.

    Without a project id in the path (the legacy store route), ``project_id`` is used, else 0:
    :func:`handle_envelope` then takes the id from the project config.
    """
    auth = request_auth(request, envelope, path_key)
    path_project = parse_project_id(request.match_info.get("project_id"))
    if path_project is None:
        path_project = project_id if project_id is not None else 0
    return build_meta(request, auth, path_project, envelope, trusted_relay=trusted_relay)


async def handle_envelope(ctx: EndpointContext, envelope: Envelope, meta: RequestMeta) -> None:
    """Hand an envelope built by an endpoint to the ingestor, as Relay's ``handle_envelope``.

    Empty envelopes are accepted and dropped. An item over its size limit rejects the whole
    envelope with :class:`ItemTooLarge` (413); its items become ``invalid`` outcomes.
    Unknown items are removed first, without outcomes, unless ``routing.accept_unknown_items``.
    """
    config = ctx.config
    if not config.routing.accepts_unknown_items(config.processing.enabled):
        for item in remove_unknown_items(envelope):
            log.debug("dropping unknown item of type %r", item.type)
    if not envelope.items:
        return
    if meta.project_id == 0:
        await _resolve_project_id(ctx, meta)
    offender = check_envelope_size_limits(ctx.limits, envelope)
    if offender is not None:
        error = ItemTooLarge(offender)
        outcomes = ctx.outcomes
        if outcomes is not None:
            state = await _project_state(ctx, meta)
            outcomes.envelope_dropped(envelope, meta, state, error.reason)
        raise error
    await ctx.ingestor.submit(envelope, meta)


async def _project_state(ctx: EndpointContext, meta: RequestMeta) -> ProjectState | None:
    # Only for outcome scoping (organization, key id); a missing config is not an error here.
    try:
        return await ctx.ingestor.projects.get(meta.public_key, ctx.config.http.timeout)
    except Exception:
        return None


async def _resolve_project_id(ctx: EndpointContext, meta: RequestMeta) -> None:
    # Routes without a project id (``/api/store/``): the key's project config names it.
    state = await _project_state(ctx, meta)
    if state is not None and state.project_id is not None:
        meta.project_id = state.project_id


def parse_request_envelope(body: bytes) -> Envelope:
    """Parse a request body as an envelope; every malformation is a 400 ``InvalidEnvelope``."""
    try:
        return parse_envelope(body)
    except UnicodeDecodeError as exc:
        # msgspec reports invalid UTF-8 inside a header this way rather than as a DecodeError.
        raise InvalidEnvelope("invalid envelope header: invalid UTF-8") from exc


_JSON_HEADERS = {"Content-Type": "application/json"}


def json_id(event_id: str | None) -> web.Response:
    """``{"id": "<32 hex>"}``, or ``{}`` without an event id (store and envelope answers)."""
    if not event_id:
        body = b"{}"
    elif event_id.isascii() and event_id.isalnum():
        # The usual hex id needs no escaping: the bytes msgspec would write, without it.
        body = b'{"id":"' + event_id.encode() + b'"}'
    else:
        body = msgspec.json.encode({"id": event_id})
    # A header mapping is cheaper than ``content_type=`` (aiohttp parses that one).
    return web.Response(body=body, headers=_JSON_HEADERS)


def text_event_id(event_id: str | None) -> web.Response:
    """The event id as a hyphenated UUID in plain text (minidump and unreal answers)."""
    value = uuid.UUID(event_id) if event_id else uuid.uuid4()
    return web.Response(text=str(value), content_type="text/plain")
