"""SDK-facing ingestion endpoints, one module per kind of client request.

Handlers only parse and authenticate; :class:`relay.server.ingest.Ingestor` decides what
happens to the data.
"""

from __future__ import annotations

from aiohttp import web

from relay.config import Config
from relay.server.endpoints.envelope import envelope_routes
from relay.server.ingest import Ingestor


def ingest_routes(config: Config, ingestor: Ingestor) -> list[web.RouteDef]:
    """Every route that takes data from clients."""
    return [*envelope_routes(config, ingestor)]


__all__ = ["ingest_routes"]
