"""Project configs as the ``projectconfigs?version=3`` API and the Redis cache carry them.

Only the fields the relay reads are typed; the ``config`` object stays a plain dict so
that a newer upstream's fields pass through to downstream relays untouched.

Serialization follows Relay: internal relays that ask for it get the *full* state, every
other relay a *limited* one (the config keys an external relay needs, nothing that reveals
quotas or internals). An upstream's ``upstream`` field is never passed on.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec


class PublicKeyConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    """One DSN key of a project."""

    public_key: str
    numeric_id: int | None = None
    is_enabled: bool = True


#: Days data is kept when the project config names no ``eventRetention`` (Relay's default).
DEFAULT_EVENT_RETENTION_DAYS = 90


class ProjectState(msgspec.Struct, rename="camel", omit_defaults=True):
    """A project's state: either ``disabled`` or the project's info and config.

    Upstreams send ``{"disabled": true}`` (or nothing) for keys that do not exist or are
    blocked.
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

    def has_feature(self, feature: str) -> bool:
        """Whether ``config.features`` lists ``feature`` (``projects:...``)."""
        features = self.config.get("features")
        return isinstance(features, list) and feature in features

    @property
    def event_retention(self) -> int:
        """``config.eventRetention`` in days; Relay's default of 90 when absent or invalid."""
        value = self.config.get("eventRetention")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return DEFAULT_EVENT_RETENTION_DAYS

    @property
    def allowed_domains(self) -> list[str]:
        """``config.allowedDomains``; Relay's default (when absent) allows every origin."""
        domains = self.config.get("allowedDomains")
        return list(domains) if isinstance(domains, list) else ["*"]

    @property
    def trusted_relays(self) -> list[str]:
        """Public keys of external relays allowed to fetch this config and sign its data."""
        relays = self.config.get("trustedRelays")
        return [r for r in relays if isinstance(r, str)] if isinstance(relays, list) else []

    @property
    def verify_signature(self) -> bool:
        """``trustedRelaySettings.verifySignature``: envelopes must carry a trusted signature."""
        settings = self.config.get("trustedRelaySettings")
        if not isinstance(settings, dict):
            return False
        value = settings.get("verifySignature")
        # Relay's SignatureVerification is "enabled"/"disabled"; older upstreams sent a bool.
        return value is True or value == "enabled"


DISABLED = ProjectState(disabled=True)

#: The config keys an external relay receives (Relay's ``LimitedProjectConfig``). The first
#: three are always present; the others only when set.
_LIMITED_ALWAYS = {"allowedDomains": ["*"], "trustedRelays": [], "piiConfig": None}
_LIMITED_OPTIONAL = (
    "filterSettings",
    "datascrubbingSettings",
    "trimming",
    "sessionMetrics",
    "measurements",
    "breakdownsV2",
    "performanceScore",
    "features",
    "txNameRules",
    "txNameReady",
    "spanDescriptionRules",
)


def limited_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a project config that Relay serializes for external relays."""
    out = {key: config.get(key, default) for key, default in _LIMITED_ALWAYS.items()}
    for key in _LIMITED_OPTIONAL:
        value = config.get(key)
        if value not in (None, False, [], {}):
            out[key] = value
    return out


def outgoing_state(state: ProjectState, *, full: bool, upstream: str | None) -> dict[str, Any]:
    """The state as a relay serves it to a downstream relay (full or limited)."""
    out: dict[str, Any] = {
        "disabled": False,
        "projectId": state.project_id,
        "lastChange": state.last_change,
        "rev": state.rev,
        "publicKeys": msgspec.to_builtins(state.public_keys),
        "slug": state.slug,
        "config": state.config if full else limited_config(state.config),
        "organizationId": state.organization_id,
    }
    if full and state.last_fetch is not None:
        out["lastFetch"] = state.last_fetch
    if upstream is not None:
        out["upstream"] = upstream
    return out


class ProjectConfigsRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    """Body of ``POST /api/0/relays/projectconfigs/?version=3``.

    Keys and revisions are decoded leniently, as Relay does: a malformed key is skipped
    (the downstream treats it as unknown), a malformed revision list is ignored.
    """

    public_keys: list[Any]
    revisions: Any = None
    full_config: bool = False
    no_cache: bool = False
    global_: bool = msgspec.field(default=False, name="global")

    def valid_keys(self) -> list[tuple[str, str | None]]:
        """``(public_key, revision)`` pairs of the well-formed keys."""
        revisions: list[Any] = self.revisions if isinstance(self.revisions, list) else []
        if revisions and len(revisions) != len(self.public_keys):
            # Mismatched lengths mean a buggy downstream: fetch everything in full.
            revisions = []
        out = []
        for index, key in enumerate(self.public_keys):
            if not is_valid_project_key(key):
                continue
            rev = revisions[index] if index < len(revisions) else None
            out.append((key, rev if isinstance(rev, str) else None))
        return out


def is_valid_project_key(key: object) -> bool:
    """A DSN public key as Relay's ``ProjectKey`` accepts it: 32 ASCII alphanumerics."""
    return isinstance(key, str) and len(key) == 32 and key.isascii() and key.isalnum()


class ProjectConfigsResponse(msgspec.Struct, omit_defaults=True):
    """Answer of ``projectconfigs?version=3``; keys missing from all lists are unknown.

    ``configs`` values stay raw (``null`` included) so that one malformed state spoils only
    its own key.
    """

    configs: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)
    pending: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    global_: dict[str, Any] | None = msgspec.field(default=None, name="global")
    global_status: str | None = msgspec.field(default=None, name="globalStatus")


_state_decoder = msgspec.json.Decoder(ProjectState)


def decode_project_state(raw: bytes) -> ProjectState:
    """Decode a project state (plain JSON, as Redis, a file or an upstream holds it).

    Raises ``msgspec.ValidationError`` with a Relay-style message (see
    :func:`describe_state_error`) when a typed field has the wrong type.
    """
    return _state_decoder.decode(raw)


_TYPE_NAMES = {"str": "a string", "int": "i64", "bool": "a boolean", "float": "f64"}


def describe_state_error(exc: Exception, raw: bytes) -> str:
    """Relay's (serde's) wording for a project state that does not decode.

    ``invalid type: integer `99`, expected a string`` reads the same in both
    implementations' error reports.
    """
    text = str(exc)
    match = re.match(r"Expected `([^`]+)`, got `(\w+)` - at `\$\.?([\w.\[\]]*)`", text)
    if not match:
        return text
    expected, got, path = match.groups()
    value: Any = None
    try:
        value = msgspec.json.decode(raw)
        for part in path.split("."):
            if not part:
                continue
            name = part.split("[", 1)[0]
            value = value[name]
            for idx in re.findall(r"\[(\d+)\]", part):
                value = value[int(idx)]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        value = None
    expected_name = next(
        (_TYPE_NAMES[t.strip()] for t in expected.split("|") if t.strip() in _TYPE_NAMES),
        expected,
    )
    if isinstance(value, bool):
        found = f"boolean `{str(value).lower()}`"
    elif isinstance(value, int):
        found = f"integer `{value}`"
    elif isinstance(value, float):
        found = f"floating point `{value}`"
    elif isinstance(value, str):
        found = f'string "{value}"'
    elif isinstance(value, list):
        found = "sequence"
    elif isinstance(value, dict):
        found = "map"
    else:
        found = {"int": "integer", "str": "string", "array": "sequence", "object": "map"}.get(
            got, got
        )
    return f"invalid type: {found}, expected {expected_name}"
