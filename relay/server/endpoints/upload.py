"""The TUS upload endpoint: ``POST /api/{project_id}/upload/`` and ``PATCH .../upload/{key}/``.

SDKs and downstream relays upload large attachments here, then reference them from an
envelope with a placeholder item (relay.protocol.upload). ``POST`` creates the upload
(``201`` and its ``Location``); ``PATCH`` sends the bytes to that location (``204``, the
final ``Location`` and ``Upload-Offset``). Where the bytes go is up to
:mod:`relay.server.uploads`: the upstream, or objectstore in a processing relay.

Before anything is created or stored the request is checked like an envelope holding one
attachment of the announced length: project and key enabled, rate limits, and the
``projects:relay-minidump-uploads`` feature for minidumps. The endpoint is off (503) unless
the global config enables ``relay.endpoint-fetch-config``, as in Relay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.errors import BadRequest, PayloadTooLarge, RelayError, ServiceUnavailable
from relay.protocol.encoding import decode_body
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.project_config import DEFAULT_EVENT_RETENTION_DAYS, ProjectState
from relay.protocol.upload import (
    ATTACHMENT_REF_CONTENT_TYPE,
    CHUNK_SIZE_OPTION,
    TUS_EXTENSION,
    TUS_RESUMABLE,
    TUS_VERSION,
    UPLOAD_CHUNK_SIZE,
    UPLOAD_OFFSET,
    location_from_query,
    parse_patch_headers,
    parse_post_headers,
)
from relay.server.body import read_raw_body
from relay.server.endpoints.common import EndpointContext, request_meta
from relay.server.endpoints.crash_uploads import MINIDUMP_UPLOADS_FEATURE
from relay.server.endpoints.project_fetch import ProjectUnavailable, fetch_config_enabled
from relay.server.ingest import Rejected, check_envelope
from relay.server.project_cache import DUMMY
from relay.server.request_meta import RequestMeta, parse_project_id
from relay.server.uploads import UploadFailed, UploadProject, UploadService

log = logging.getLogger(__name__)


class UploadError(RelayError):
    """An upload the backend refused or could not complete; its status is the backend's."""

    reason = "upload_failed"

    def __init__(self, failed: UploadFailed) -> None:
        super().__init__(f"upload error: {failed}")
        self.status = failed.status


class FeatureDisabled(Rejected):
    """The project lacks the feature the upload needs (403, outcome ``feature_disabled``)."""

    def __init__(self, name: str) -> None:
        super().__init__("feature_disabled", f"FeatureDisabled({name})")


def _option(global_config: dict[str, object] | None, name: str) -> int:
    options = (global_config or {}).get("options")
    value = options.get(name) if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def upload_routes(ctx: EndpointContext) -> list[web.RouteDef]:
    """The TUS routes; empty when the relay has no upload service."""
    uploads = ctx.uploads
    if uploads is None:
        return []
    config = ctx.config
    max_upload = int(config.limits.max_upload_size)
    projects = ctx.ingestor.projects

    async def project(meta: RequestMeta) -> ProjectState:
        if not fetch_config_enabled(projects.global_config):
            raise ServiceUnavailable("uploads are disabled", retry_after=60)
        try:
            return await projects.get(meta.public_key, config.limits.query_timeout)
        except TimeoutError:
            raise ProjectUnavailable() from None

    def check(
        meta: RequestMeta, state: ProjectState, length: int | None, attachment_type: str | None
    ) -> UploadProject:
        # Checked as an envelope with one placeholder of the announced length, so that the
        # project, key and rate limits apply exactly as they would to the envelope.
        headers: dict[str, object] = {"attachment_length": length or 1}
        if attachment_type is not None:
            headers["attachment_type"] = attachment_type
        item = Item.new(ItemType.ATTACHMENT, b"", content_type=ATTACHMENT_REF_CONTENT_TYPE,
                        **headers)  # fmt: skip
        envelope = Envelope({}, [item])
        outcomes = ctx.outcomes
        try:
            check_envelope(config, state, envelope, meta, ctx.ingestor.trusted(meta))
            if (
                attachment_type == AttachmentType.MINIDUMP
                and state is not DUMMY
                and not state.has_feature(MINIDUMP_UPLOADS_FEATURE)
            ):
                raise FeatureDisabled("MinidumpUploads")
        except Rejected as exc:
            if outcomes is not None and state is not DUMMY:
                outcomes.envelope_dropped(envelope, meta, state, exc.reason)
            raise
        rate_limits = ctx.ingestor.rate_limits
        if length is not None and rate_limits is not None and state is not DUMMY:
            limited = rate_limits.enforce_cached(envelope, meta, state)
            if limited is not None and not envelope.items:
                limited.detail = "upload rejected: rate limited"
                raise limited
        retention = state.event_retention if state is not DUMMY else DEFAULT_EVENT_RETENTION_DAYS
        return UploadProject(
            project_id=state.project_id or meta.project_id,
            public_key=meta.public_key,
            org_id=state.organization_id or 0,
            retention_days=retention,
        )

    def check_length(request: web.Request) -> None:
        # As Relay's body limit layer: before the request is even looked at.
        if request.content_length is not None and request.content_length > max_upload:
            raise PayloadTooLarge("length limit exceeded")

    async def create(request: web.Request) -> web.StreamResponse:
        check_length(request)
        meta = request_meta(request)
        headers = parse_post_headers(request.headers)
        if headers.upload_length is not None and headers.upload_length > max_upload:
            raise PayloadTooLarge(f"upload exceeds the limit of {max_upload} bytes")
        state = await project(meta)
        upload_project = check(meta, state, headers.upload_length, headers.attachment_type)
        try:
            location = await uploads.create(
                upload_project, headers.upload_length, headers.attachment_type
            )
        except UploadFailed as exc:
            log.warning("creating an upload failed: %s", exc)
            raise UploadError(exc) from exc
        response_headers = {"Location": location, TUS_EXTENSION: "creation"}
        chunk_size = _option(projects.global_config, CHUNK_SIZE_OPTION)
        if chunk_size:
            response_headers[UPLOAD_CHUNK_SIZE] = str(chunk_size)
        return web.Response(status=201, headers=response_headers)

    async def patch(request: web.Request) -> web.StreamResponse:
        check_length(request)
        meta = request_meta(request)
        headers = parse_patch_headers(request.headers)
        project_id = parse_project_id(request.match_info.get("project_id"))
        signed = location_from_query(
            project_id or 0, request.match_info["key"], list(request.query.items())
        )
        if signed is None:
            raise BadRequest("invalid upload location: missing or malformed parameters")
        location = signed.location
        if location.upload_id is not None:
            # A resumable upload: chunks of a declared length, from the declared offset.
            assert location.upload_length is not None
            if headers.decoded_content_length is None:
                raise BadRequest("Missing X-Decoded-Content-Length header")
            if headers.upload_offset > location.upload_length:
                raise _Conflict(
                    f"Invalid Upload-Offset {headers.upload_offset} "
                    f"for Upload-Length {location.upload_length}"
                )
            remaining = location.upload_length - headers.upload_offset
            if headers.decoded_content_length > remaining:
                raise BadRequest(
                    f"Chunk of {headers.decoded_content_length} bytes exceeds the "
                    f"remaining {remaining} bytes"
                )
            lower = upper = headers.decoded_content_length
        elif location.upload_length is not None:
            lower = upper = location.upload_length
        else:
            lower, upper = 1, max_upload
        state = await project(meta)
        upload_project = check(meta, state, None, None)
        # The wire may carry up to the upload limit; the decoded bytes must fit the location.
        raw = await read_raw_body(request, max_upload)
        try:
            body = decode_body(raw, request.headers.get("Content-Encoding"), upper)
        except PayloadTooLarge:
            # More than the location holds: a wrong length, not an oversized request.
            raise BadRequest(f"the upload exceeds its length of {upper} bytes") from None
        if not lower <= len(body) <= upper:
            raise BadRequest(f"expected an upload of {lower} to {upper} bytes, got {len(body)}")
        try:
            uploaded = await uploads.upload(
                upload_project, signed.uri(), body, offset=headers.upload_offset
            )
        except UploadFailed as exc:
            log.warning("an upload failed: %s", exc)
            raise UploadError(exc) from exc
        return web.Response(
            status=204, headers={"Location": uploaded.location, UPLOAD_OFFSET: str(uploaded.length)}
        )

    return [
        web.post("/api/{project_id}/upload/", _tus(create)),
        web.patch("/api/{project_id}/upload/{key}/", _tus(patch)),
    ]


class _Conflict(RelayError):
    status = 409
    reason = "invalid"


def _tus(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Every answer of the upload endpoint, errors included, names the TUS version."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except RelayError as exc:
            exc.headers = {**(exc.headers or {}), TUS_RESUMABLE: TUS_VERSION}
            raise
        response.headers[TUS_RESUMABLE] = TUS_VERSION
        return response

    return wrapped


__all__ = ["UploadService", "upload_routes"]
