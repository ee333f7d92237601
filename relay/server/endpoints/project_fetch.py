"""Waiting for the project config in upload endpoints (``relay.endpoint-fetch-config``).

Crash and upload endpoints may need the project's config before they read the body: to
know whether it is rate limited, which features it has, and where large files go. Waiting
is opt-in per global option, as Relay gates it with a kill switch.
"""

from __future__ import annotations

from typing import Any

from relay.errors import ServiceUnavailable
from relay.protocol.project_config import ProjectState
from relay.server.endpoints.common import EndpointContext
from relay.server.ingest import Rejected
from relay.server.project_cache import DUMMY
from relay.server.request_meta import RequestMeta


class ProjectUnavailable(ServiceUnavailable):
    """The project config did not arrive within ``limits.query_timeout`` (503)."""

    reason = "project_unavailable"

    def __init__(self) -> None:
        super().__init__("project config is not available", retry_after=1)


#: The global option that lets upload endpoints wait for the project config.
FETCH_CONFIG_OPTION = "relay.endpoint-fetch-config.enabled"


def fetch_config_enabled(global_config: dict[str, Any] | None) -> bool:
    """Whether the global config lets endpoints wait for project configs."""
    options = (global_config or {}).get("options")
    return isinstance(options, dict) and options.get(FETCH_CONFIG_OPTION) is True


async def endpoint_project(ctx: EndpointContext, meta: RequestMeta) -> ProjectState | None:
    """The project config, when the global config lets the endpoint wait for it.

    As Relay, a config that does not arrive in time is a 503, a disabled project or key a 403;
    neither is an outcome (the data is not known to belong to an organization).
    """
    config = ctx.config
    projects = ctx.ingestor.projects
    if config.relay.mode == "proxy" or not fetch_config_enabled(projects.global_config):
        return None
    try:
        state = await projects.get(meta.public_key, config.limits.query_timeout)
    except TimeoutError:
        raise ProjectUnavailable() from None
    if state is DUMMY:
        return None
    if not state.allows_key(meta.public_key):
        raise Rejected("project_id", "ProjectId")
    return state
