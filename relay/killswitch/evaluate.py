"""Applying kill-switches to an envelope, item by item (no I/O).

The field values of an item come from, in this order: the item (``item_type``, a
``platform`` item header), the envelope's event payload (``event_type``, ``platform``,
``release``, ``environment``, read once and only when a rule needs them), the envelope
headers (``sdk.name``, the trace context's ``release``/``environment``) and the request's
scope (project, organization and key ids, the client's SDK name).

Items that belong to the event (attachments, user reports) share its ``event_type``,
``release`` and ``environment``; standalone items have no ``event_type``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from relay.killswitch.rules import Rule, RuleSyntaxError, Value, parse_rule
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType

#: Fields read from the event payload (parsing it is the costly part).
_EVENT_FIELDS = frozenset({"event_type", "release", "environment", "platform"})
_ITEM_EVENT_TYPES = {
    ItemType.TRANSACTION: "transaction",
    ItemType.FEEDBACK: "feedback",
}


class _EventFacts(msgspec.Struct):
    # ``object``: a payload with odd types still yields the fields that are strings.
    type: object = None
    platform: object = None
    release: object = None
    environment: object = None
    exception: msgspec.Raw = msgspec.Raw()


_event_decoder = msgspec.json.Decoder(_EventFacts)


@dataclass(frozen=True, slots=True)
class Scope:
    """What the relay knows about the request besides the envelope."""

    project_id: int | None = None
    org_id: int | None = None
    key_id: int | None = None
    #: ``sentry_client`` of the request, e.g. ``sentry.python/2.0.0``.
    client: str | None = None


class _Facts:
    """Lazily computed field values of one envelope."""

    def __init__(self, envelope: Envelope, scope: Scope) -> None:
        self.envelope = envelope
        self.scope = scope
        self._event: _EventFacts | None = None
        self._event_item: Item | None = None
        self._event_read = False

    def event(self) -> tuple[Item | None, _EventFacts | None]:
        if not self._event_read:
            self._event_read = True
            item = self.envelope.event_item()
            self._event_item = item
            if item is not None and item.payload[:1] == b"{":
                try:
                    self._event = _event_decoder.decode(item.payload)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    self._event = None
        return self._event_item, self._event

    def envelope_value(self, field: str) -> Value | None:
        scope = self.scope
        if field == "project_id":
            return scope.project_id
        if field == "org_id":
            return scope.org_id
        if field == "key_id":
            return scope.key_id
        if field == "sdk_name":
            sdk = self.envelope.headers.get("sdk")
            if isinstance(sdk, Mapping) and isinstance(sdk.get("name"), str):
                name: str = sdk["name"]
                return name
            if scope.client:
                return scope.client.split("/", 1)[0]
            return None
        item, event = self.event() if field in _EVENT_FIELDS else (None, None)
        if field == "event_type":
            if item is None:
                return None
            if item.type in _ITEM_EVENT_TYPES:
                return _ITEM_EVENT_TYPES[item.type]
            if event is not None and isinstance(event.type, str) and event.type:
                return event.type
            if item.type == ItemType.SECURITY:
                return "csp"
            has_exception = event is not None and bytes(event.exception) not in (b"", b"null")
            return "error" if has_exception else "default"
        if event is not None:
            value = getattr(event, field, None)
            if isinstance(value, str):
                return value
        if field in ("release", "environment"):
            trace = self.envelope.headers.get("trace")
            if isinstance(trace, Mapping) and isinstance(trace.get(field), str):
                found: str = trace[field]
                return found
        return None


class KillSwitches:
    """A set of named, compiled rules. Immutable; build a new one when the set changes."""

    def __init__(self, rules: Mapping[str, Rule] | None = None) -> None:
        self.rules: dict[str, Rule] = dict(rules or {})

    @classmethod
    def from_texts(
        cls, texts: Mapping[str, str], previous: KillSwitches | None = None
    ) -> tuple[KillSwitches, dict[str, RuleSyntaxError]]:
        """Compile named rule texts; reuse rules of ``previous`` whose text is unchanged.

        Returns the switches that compiled and the errors of those that did not.
        """
        rules: dict[str, Rule] = {}
        errors: dict[str, RuleSyntaxError] = {}
        old = previous.rules if previous is not None else {}
        for name, text in texts.items():
            known = old.get(name)
            if known is not None and known.text == text.strip():
                rules[name] = known
                continue
            try:
                rules[name] = parse_rule(text)
            except RuleSyntaxError as exc:
                errors[name] = exc
        return cls(rules), errors

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def match_item(self, envelope: Envelope, item: Item, scope: Scope) -> str | None:
        """The name of the first switch (by name) that drops ``item``, if any."""
        return self._match(_Facts(envelope, scope), item)

    def _match(self, facts: _Facts, item: Item) -> str | None:
        def lookup(field: str) -> Value | None:
            if field == "item_type":
                return item.type
            if field == "platform" and item.platform is not None:
                return item.platform
            return facts.envelope_value(field)

        for name in sorted(self.rules):
            if self.rules[name].matches(lookup):
                return name
        return None

    def split(self, envelope: Envelope, scope: Scope) -> list[tuple[Item, str]]:
        """Remove the items a switch drops from ``envelope``; return them with the switch name."""
        if not self.rules or not envelope.items:
            return []
        facts = _Facts(envelope, scope)
        kept: list[Item] = []
        dropped: list[tuple[Item, str]] = []
        for item in envelope.items:
            name = self._match(facts, item)
            if name is None:
                kept.append(item)
            else:
                dropped.append((item, name))
        if dropped:
            envelope.items = kept
        return dropped


def compile_all(texts: Iterable[tuple[str, str]]) -> KillSwitches:
    """Compile rules that are known to be valid (raises on the first broken one)."""
    return KillSwitches({name: parse_rule(text) for name, text in texts})
