"""What happens to an accepted envelope: project checks, then forward or process."""

from __future__ import annotations

import functools
from typing import Protocol

from aiohttp import web

from relay.config import Config
from relay.errors import Forbidden, ServiceUnavailable
from relay.filters.origins import SchemeDomainPort, compile_origins, matches_any_origin
from relay.protocol.envelope import Envelope
from relay.protocol.project_config import ProjectState
from relay.server.project_cache import ProjectCache
from relay.server.relay_api import RelayRegistry
from relay.server.request_meta import RequestMeta
from relay.server.upstream import UpstreamClient

_REJECTED = "event submission rejected with_reason: ProjectId"
_CORS = "event submission rejected with_reason: Cors"


@functools.lru_cache(maxsize=4096)
def _origins(patterns: tuple[str, ...]) -> list[SchemeDomainPort]:
    # Keyed by the patterns themselves: compiled once per distinct allowedDomains list.
    return compile_origins(patterns)


class EnvelopeSink(Protocol):
    """Where accepted envelopes go: the upstream (POP) or Kafka (processing)."""

    async def accept(self, envelope: Envelope, meta: RequestMeta, state: ProjectState) -> None:
        """Take the envelope or raise a RelayError (503 when over budget)."""


class Ingestor:
    """Checks an envelope against its project and hands it to the sink."""

    def __init__(
        self,
        config: Config,
        projects: ProjectCache,
        registry: RelayRegistry,
        sink: EnvelopeSink,
        upstream: UpstreamClient,
    ) -> None:
        self.config = config
        #: For endpoints that proxy requests to the next hop.
        self.upstream = upstream
        self.projects = projects
        self.registry = registry
        self.sink = sink

    def is_trusted_relay(self, request: web.Request, body: bytes) -> bool:
        """Whether the request was signed by a relay we know (its headers are trusted)."""
        return self.registry.is_trusted(request, body)

    async def submit(self, envelope: Envelope, meta: RequestMeta) -> None:
        """Accept the envelope or raise the error that tells the client why not."""
        try:
            state = await self.projects.get(meta.public_key, self.config.http.timeout)
        except TimeoutError:
            raise ServiceUnavailable("project not available", retry_after=1) from None
        if not state.allows_key(meta.public_key):
            raise Forbidden(_REJECTED)
        if (
            state.project_id is not None
            and state.project_id != meta.project_id
            and not self.config.relay.override_project_ids
        ):
            raise Forbidden(_REJECTED)
        if meta.origin is not None and not matches_any_origin(
            meta.origin, _origins(tuple(state.allowed_domains))
        ):
            raise Forbidden(_CORS)
        if state.project_id is not None:
            meta.project_id = state.project_id
        await self.sink.accept(envelope, meta, state)
