"""Project configs as the ``projectconfigs?version=3`` API and the Redis cache carry them.

Only the fields the relay reads are typed; the ``config`` object stays a plain dict so
that a newer upstream's fields pass through to downstream relays untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec


class PublicKeyConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    """One DSN key of a project."""

    public_key: str
    numeric_id: int | None = None
    is_enabled: bool = True


class ProjectState(msgspec.Struct, rename="camel", omit_defaults=True):
    """A project's state: either ``disabled`` or the project's info and config.

    Upstreams send ``{"disabled": true}`` for keys that do not exist or are blocked.
    """

    disabled: bool = False
    project_id: int | None = None
    organization_id: int | None = None
    slug: str | None = None
    rev: str | None = None
    last_change: str | None = None
    last_fetch: str | None = None
    public_keys: list[PublicKeyConfig] = msgspec.field(default_factory=list)
    config: dict[str, Any] = msgspec.field(default_factory=dict)

    def key_config(self, public_key: str) -> PublicKeyConfig | None:
        """The entry of ``public_keys`` for this key, if any."""
        for key in self.public_keys:
            if key.public_key == public_key:
                return key
        return None

    def allows_key(self, public_key: str) -> bool:
        """Whether data sent with ``public_key`` may be accepted for this project."""
        if self.disabled:
            return False
        key = self.key_config(public_key)
        return key is not None and key.is_enabled

    @property
    def allowed_domains(self) -> list[str]:
        domains = self.config.get("allowedDomains")
        return list(domains) if isinstance(domains, list) else ["*"]


DISABLED = ProjectState(disabled=True)


class ProjectConfigsRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    """Body of ``POST /api/0/relays/projectconfigs/?version=3``."""

    public_keys: list[str]
    revisions: list[str | None] = msgspec.field(default_factory=list)
    full_config: bool = False
    no_cache: bool = False
    global_: bool = msgspec.field(default=False, name="global")


class ProjectConfigsResponse(msgspec.Struct, omit_defaults=True):
    """Answer of ``projectconfigs?version=3``; keys missing from all lists are unknown."""

    configs: dict[str, ProjectState | None] = msgspec.field(default_factory=dict)
    pending: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    global_: dict[str, Any] | None = msgspec.field(default=None, name="global")
    global_status: str | None = msgspec.field(default=None, name="globalStatus")


_state_decoder = msgspec.json.Decoder(ProjectState)


def decode_project_state(raw: bytes) -> ProjectState:
    """Decode a cached project state (plain JSON, as Redis or a file holds it)."""
    return _state_decoder.decode(raw)
