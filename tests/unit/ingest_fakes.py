"""Stand-ins for the Ingestor's collaborators in unit tests (relay.server.ingest)."""

from __future__ import annotations

from typing import Any

from relay.protocol.project_config import ProjectState
from relay.server.project_cache import DUMMY


class StaticProjects:
    """A project cache where every key is known (the dummy project) and the global config
    has arrived."""

    global_ready = True

    def get_state(self, public_key: str) -> ProjectState:
        return DUMMY

    def subscribe(self, listener: Any) -> None:
        pass

    def subscribe_global(self, listener: Any) -> None:
        pass


class NoInternalRelays:
    """A relay registry that trusts no downstream relay."""

    def is_internal(self, relay_id: str | None) -> bool:
        return False
