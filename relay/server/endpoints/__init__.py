"""SDK-facing ingestion endpoints, one module per kind of client request.

Handlers only parse and authenticate, turn the request into an envelope and hand it to
:func:`relay.server.endpoints.common.handle_envelope`; the
:class:`relay.server.ingest.Ingestor` decides what happens to the data.

| route (``/api/{project_id}/...``)            | module        | answer                     |
|----------------------------------------------|---------------|----------------------------|
| ``envelope/``                                | envelope      | ``{"id": ...}``            |
| ``store/`` (POST, GET ``?sentry_data=``)     | store         | ``{"id": ...}`` / GIF      |
| ``security/``, ``csp-report/``, ``nel/``     | security      | empty 200, 415             |
| ``minidump[/]``                              | minidump      | event id as text           |
| ``events/{event_id}/attachments/``           | attachments   | empty 201                  |
| ``unreal/{sentry_key}/``, ``cron/{slug}...`` | crash         | event id as text / 202     |
| ``integration/otlp/v1/{traces,logs}[/]``     | otlp          | OTLP response              |
| ``upload/`` (POST), ``upload/{key}/`` (PATCH)  | upload        | 201 / 204 with Location    |
| anything else under ``/api/``                | forward       | the upstream's answer      |
"""

from __future__ import annotations

from aiohttp import web

from relay.config import Config
from relay.server.endpoints.attachments import attachment_routes
from relay.server.endpoints.common import EndpointContext
from relay.server.endpoints.crash import crash_routes
from relay.server.endpoints.envelope import envelope_routes
from relay.server.endpoints.forward import forward_route
from relay.server.endpoints.minidump import minidump_routes
from relay.server.endpoints.otlp import otlp_routes
from relay.server.endpoints.paths import fold_slashes_middleware
from relay.server.endpoints.security import security_routes
from relay.server.endpoints.store import store_routes
from relay.server.endpoints.upload import upload_routes
from relay.server.ingest import Ingestor
from relay.server.uploads import UploadService


def ingest_routes(
    config: Config, ingestor: Ingestor, uploads: UploadService | None = None
) -> list[web.RouteDef]:
    """Every route that takes data from clients, and the catch-all that forwards the rest.

    The catch-all matches any path, but aiohttp tries it last (routes are looked up by their
    longest static prefix first), so it never shadows another route. Without an upload
    service, large files stay in envelopes and ``upload/`` requests are forwarded.
    """
    ctx = EndpointContext(config, ingestor, uploads)
    return [
        *envelope_routes(ctx),
        *store_routes(ctx),
        *security_routes(ctx),
        *minidump_routes(ctx),
        *attachment_routes(ctx),
        *crash_routes(ctx),
        *otlp_routes(ctx),
        *upload_routes(ctx),
        forward_route(config, ingestor),
    ]


__all__ = ["fold_slashes_middleware", "ingest_routes"]
