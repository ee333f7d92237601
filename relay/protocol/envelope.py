"""Sentry envelopes: parsing and serialization, following Relay's framing rules exactly.

Wire format (``relay-server/src/envelope/``)::

    {"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"..."}\\n     envelope header
    {"type":"event","length":41,"content_type":"application/json"}\\n  item header
    {"message":"hello world","level":"error"}\\n                       payload
    {"type":"attachment"}\\n                                         no length: payload
    helloworld\\n                                                    runs to the next \\n

Parsing rules, as Relay's ``Envelope::parse_bytes`` applies them:

* Each header is one JSON object. Whitespace (including blank lines) before a header is skipped;
  the object must be followed directly by ``\\n`` or the end of the data, so ``\\r\\n`` after a
  header is an error. A header may span lines if its JSON does.
* The envelope header may be ``{}`` and may end the data; an envelope may have no items.
* Item headers need a string ``type``; unknown types are kept. ``length``, if present, must be a
  non-negative integer: the payload is then exactly that many bytes and must be followed by
  ``\\n`` or the end of the data. Without ``length`` the payload runs to the next ``\\n`` (so it
  keeps a trailing ``\\r``) or the end of the data.
* Anything after the last item other than a single newline is parsed as another item, so blank
  lines at the very end are an error ("unexpected end of file"), as in Relay.
* At most 500 items; ``event_id`` must be a UUID (simple, hyphenated, braced or URN form),
  ``sent_at`` an RFC 3339 timestamp, ``dsn`` a DSN with a numeric project id and a 32-character
  public key; each may also be ``null``.

All violations raise :class:`~relay.errors.InvalidEnvelope`. Headers are decoded with msgspec
and each payload is copied exactly once (a slice of the input).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from relay.errors import AuthError, InvalidEnvelope, InvalidJson
from relay.protocol.auth import check_public_key, parse_dsn
from relay.protocol.items import (
    ATTACHMENT_REF_CONTENT_TYPES,
    EVENT_ATTACHMENT_TYPES,
    EVENT_ITEM_TYPES,
    INTEGRATION_CONTENT_TYPES,
    ITEM_TYPE_ALIASES,
    NON_CONTAINER_ITEM_TYPES,
    REQUIRES_EVENT_ITEM_TYPES,
    TRACE_ATTACHMENT_CONTENT_TYPES,
    UI_PROFILE_PLATFORMS,
    AttachmentType,
    DataCategory,
    ItemType,
    item_type_for_event_type,
)

__all__ = [
    "CONTAINER_CONTENT_TYPES",
    "ENVELOPE_CONTENT_TYPE",
    "MAX_ENVELOPE_ITEMS",
    "Envelope",
    "Item",
    "MinimalEvent",
    "envelope_from_event",
    "normalize_event_id",
    "parse_envelope",
    "parse_minimal_event",
]

#: ``Content-Type`` of envelope request bodies.
ENVELOPE_CONTENT_TYPE: Final = "application/x-sentry-envelope"
#: Relay refuses envelopes with more items than this.
MAX_ENVELOPE_ITEMS: Final = 500
#: Content types (lower case) of item containers, whose ``item_count`` header is required.
CONTAINER_CONTENT_TYPES: Final = frozenset(
    {
        "application/vnd.sentry.items.log+json",
        "application/vnd.sentry.items.span.v2+json",
        "application/vnd.sentry.items.trace-metric+json",
    }
)

_U32_MAX: Final = 0xFFFF_FFFF
# Nintendo Switch crash reports arrive as plain attachments and are recognised by name and magic.
_NNSWITCH_FILENAME: Final = "dying_message.dat"
_NNSWITCH_MAGIC: Final = b"sntr"

_json_decode: Final = msgspec.json.Decoder().decode
_json_encode: Final = msgspec.json.Encoder().encode

_NEWLINE: Final = 0x0A
_OPEN_BRACE: Final = 0x7B
_CLOSE_BRACE: Final = 0x7D
# JSON whitespace, which serde_json skips before each value of a stream.
_NON_WS: Final = re.compile(rb"[^ \t\r\n]")
# Structural characters that matter when looking for the end of a JSON object, and the rest of a
# string literal after its opening quote (unrolled so long strings do not backtrack).
_BRACE_OR_QUOTE: Final = re.compile(rb'[{}"]')
_STRING_REST: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

_HEX: Final = "[0-9a-fA-F]"
_HYPHENATED: Final = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# The forms Rust's `Uuid::parse_str` accepts (uuid 1.x): simple, hyphenated, braced and URN.
_UUID_RE: Final = re.compile(
    rf"{_HEX}{{32}}|{_HYPHENATED}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED}"
)


def normalize_event_id(value: str) -> str | None:
    """Return an event id in Relay's canonical form (32 lower-case hex digits).

    Accepts the forms Relay accepts; returns ``None`` for anything else.
    """
    if _UUID_RE.fullmatch(value) is None:
        return None
    if len(value) == 32:
        return value.lower()
    return uuid.UUID(value[-37:-1] if value[0] == "{" else value[-36:]).hex


def _parse_datetime(value: str) -> datetime | None:
    # chrono accepts a lower-case "z" as UTC; Python 3.11 only the upper-case one.
    if value[-1:] == "z":
        value = value[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Relay deserializes into `DateTime<Utc>`, which needs an explicit offset.
    return parsed if parsed.tzinfo is not None else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _u32_or_none(value: Any) -> int | None:
    # Relay reads these headers as u32 and treats anything else as absent.
    if type(value) is int and 0 <= value <= _U32_MAX:
        return value
    return None


class Item(msgspec.Struct, gc=False):
    """One envelope item: its JSON headers and raw payload.

    ``headers`` always holds a string ``type``. Its ``length`` entry may be stale after the
    payload changes; :attr:`length` and :meth:`Envelope.serialize` use the real payload size.
    """

    # gc=False: items are numerous and never part of reference cycles.
    headers: dict[str, Any]
    payload: bytes = b""

    @classmethod
    def new(cls, item_type: str, payload: bytes = b"", **headers: Any) -> Item:
        """Create an item of ``item_type`` with extra headers (``content_type=...`` etc.)."""
        return cls({"type": item_type, "length": len(payload), **headers}, payload)

    @property
    def type(self) -> str:
        """The item type, e.g. "event"; unknown types are returned as sent."""
        item_type: str = self.headers["type"]
        return item_type

    @property
    def length(self) -> int:
        """The payload size in bytes."""
        return len(self.payload)

    @property
    def content_type(self) -> str | None:
        """The ``content_type`` header as sent (not normalised)."""
        return _str_or_none(self.headers.get("content_type"))

    @property
    def filename(self) -> str | None:
        """The ``filename`` header of attachments."""
        return _str_or_none(self.headers.get("filename"))

    @property
    def attachment_type(self) -> str | None:
        """The ``attachment_type`` header, e.g. "event.minidump".

        Nintendo Switch dying messages carry no attachment type; like Relay, they are recognised
        by their file name and magic bytes.
        """
        value = self.headers.get("attachment_type")
        if isinstance(value, str):
            return value
        if (
            self.headers["type"] == ItemType.ATTACHMENT
            and self.headers.get("filename") == _NNSWITCH_FILENAME
            and self.payload.startswith(_NNSWITCH_MAGIC)
        ):
            return AttachmentType.NINTENDO_SWITCH_DYING_MESSAGE
        return None

    @property
    def platform(self) -> str | None:
        """The ``platform`` header (profile chunks hoist it there)."""
        return _str_or_none(self.headers.get("platform"))

    @property
    def item_count(self) -> int | None:
        """How many items this item contains (``item_count``), for types that can be containers."""
        if self.headers["type"] in NON_CONTAINER_ITEM_TYPES:
            return None
        return _u32_or_none(self.headers.get("item_count"))

    @property
    def span_count(self) -> int:
        """The ``span_count`` header of transactions (spans besides the transaction), or 0."""
        return _u32_or_none(self.headers.get("span_count")) or 0

    @property
    def is_container(self) -> bool:
        """Whether the payload is an item container (logs, spans v2, trace metrics)."""
        content_type = self.content_type
        return content_type is not None and content_type.lower() in CONTAINER_CONTENT_TYPES

    def creates_event(self) -> bool:
        """Whether this item creates an event (Relay's ``Item::creates_event``)."""
        item_type = self.headers["type"]
        if item_type in EVENT_ITEM_TYPES:
            return True
        return item_type == ItemType.ATTACHMENT and self.attachment_type in EVENT_ATTACHMENT_TYPES

    def requires_event(self) -> bool:
        """Whether this item belongs to an event and stays with it (``Item::requires_event``)."""
        return self.headers["type"] in REQUIRES_EVENT_ITEM_TYPES

    def set_payload(self, payload: bytes, content_type: str | None = None) -> None:
        """Replace the payload, updating ``length`` (and ``content_type`` if given)."""
        self.payload = payload
        self.headers["length"] = len(payload)
        if content_type is not None:
            self.headers["content_type"] = content_type

    def attachment_body_size(self) -> int:
        """The attachment size Relay counts (at least 1).

        Trace attachments exclude their ``meta_length`` prefix; placeholders count the
        ``attachment_length`` they stand for; other attachments count the whole payload.
        """
        content_type = (self.content_type or "").lower()
        if content_type in TRACE_ATTACHMENT_CONTENT_TYPES:
            meta_length = _u32_or_none(self.headers.get("meta_length")) or 0
            size = len(self.payload) - meta_length
        elif content_type in ATTACHMENT_REF_CONTENT_TYPES:
            attachment_length = self.headers.get("attachment_length")
            size = attachment_length if type(attachment_length) is int else 0
        else:
            size = len(self.payload)
        return max(size, 1)

    def quantities(self) -> list[tuple[DataCategory, int]]:
        """Every (category, quantity) this item counts toward, as Relay's ``Item::quantities``.

        ``event`` items count as ``ERROR`` here since the event type is in the payload; use
        :func:`relay.protocol.items.event_type_category` once it is known.
        """
        item_type = self.headers["type"]
        count = self.item_count
        if count is None:
            count = 1
        if item_type == ItemType.EVENT or item_type == ItemType.UNREAL_REPORT:
            return [(DataCategory.ERROR, count)]
        if item_type == ItemType.TRANSACTION:
            spans = count + self.span_count
            return [
                (DataCategory.TRANSACTION, count),
                (DataCategory.TRANSACTION_INDEXED, count),
                (DataCategory.SPAN, spans),
                (DataCategory.SPAN_INDEXED, spans),
            ]
        if item_type == ItemType.SECURITY or item_type == ItemType.RAW_SECURITY:
            return [(DataCategory.SECURITY, count)]
        if item_type == ItemType.ATTACHMENT:
            return [
                (DataCategory.ATTACHMENT, self.attachment_body_size()),
                (DataCategory.ATTACHMENT_ITEM, count),
            ]
        if item_type == ItemType.SESSION or item_type == ItemType.SESSIONS:
            return [(DataCategory.SESSION, count)]
        if item_type == ItemType.LOG:
            return [
                (DataCategory.LOG_BYTE, max(len(self.payload), 1)),
                (DataCategory.LOG_ITEM, count),
            ]
        if item_type == ItemType.TRACE_METRIC:
            return [
                (DataCategory.TRACE_METRIC_BYTE, max(len(self.payload), 1)),
                (DataCategory.TRACE_METRIC, count),
            ]
        if item_type == ItemType.USER_REPORT or item_type == ItemType.FEEDBACK:
            return [(DataCategory.USER_REPORT_V2, count)]
        if item_type == ItemType.PROFILE:
            quantities = [(DataCategory.PROFILE, count), (DataCategory.PROFILE_INDEXED, count)]
            platform = self.platform
            if platform is not None:
                ui = platform in UI_PROFILE_PLATFORMS
                category = DataCategory.PROFILE_UI if ui else DataCategory.PROFILE_BACKEND
                quantities.append((category, count))
            return quantities
        if item_type == ItemType.PROFILE_CHUNK:
            # Without a platform header the category is unknown until the payload is parsed.
            platform = self.platform
            if platform is None:
                return []
            ui = platform in UI_PROFILE_PLATFORMS
            return [(DataCategory.PROFILE_CHUNK_UI if ui else DataCategory.PROFILE_CHUNK, count)]
        if item_type in (ItemType.REPLAY_EVENT, ItemType.REPLAY_RECORDING, ItemType.REPLAY_VIDEO):
            return [(DataCategory.REPLAY, count)]
        if item_type == ItemType.CHECK_IN:
            return [(DataCategory.MONITOR, count)]
        if item_type == ItemType.SPAN:
            return [(DataCategory.SPAN, count), (DataCategory.SPAN_INDEXED, count)]
        if item_type == ItemType.INTEGRATION:
            product = INTEGRATION_CONTENT_TYPES.get(self.content_type or "")
            if product == "logs":
                return [
                    (DataCategory.LOG_BYTE, max(len(self.payload), 1)),
                    (DataCategory.LOG_ITEM, count),
                ]
            if product == "spans":
                return [(DataCategory.SPAN, count), (DataCategory.SPAN_INDEXED, count)]
        # Client reports, metric buckets, form data and unknown types are not counted.
        return []


class Envelope(msgspec.Struct):
    """An envelope: JSON headers and a list of items."""

    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    items: list[Item] = msgspec.field(default_factory=list)

    @property
    def event_id(self) -> str | None:
        """The ``event_id`` header as sent (any UUID form), or ``None``."""
        return _str_or_none(self.headers.get("event_id"))

    @event_id.setter
    def event_id(self, value: str | None) -> None:
        if value is None:
            self.headers.pop("event_id", None)
        else:
            self.headers["event_id"] = value

    @property
    def dsn(self) -> str | None:
        """The ``dsn`` header, or ``None``."""
        return _str_or_none(self.headers.get("dsn"))

    @property
    def sent_at(self) -> str | None:
        """The ``sent_at`` header (RFC 3339) as sent, or ``None``."""
        return _str_or_none(self.headers.get("sent_at"))

    @property
    def sent_at_datetime(self) -> datetime | None:
        """``sent_at`` as an aware datetime, or ``None`` if absent or invalid."""
        sent_at = self.sent_at
        return None if sent_at is None else _parse_datetime(sent_at)

    @property
    def trace(self) -> dict[str, Any] | None:
        """The dynamic sampling context (``trace`` header), if it is an object."""
        trace = self.headers.get("trace")
        return trace if isinstance(trace, dict) else None

    def add_item(self, item: Item) -> None:
        """Append an item."""
        self.items.append(item)

    def get_item(self, item_type: str) -> Item | None:
        """Return the first item of ``item_type``, or ``None``."""
        for item in self.items:
            if item.headers["type"] == item_type:
                return item
        return None

    def event_item(self) -> Item | None:
        """Return the first item whose type is an event type (event, transaction, security, ...).

        Crash-report attachments also create events but are not returned; use
        :meth:`creates_event` to ask whether the envelope makes an event at all.
        """
        for item in self.items:
            if item.headers["type"] in EVENT_ITEM_TYPES:
                return item
        return None

    def creates_event(self) -> bool:
        """Whether any item creates an event (event payloads or crash reports)."""
        return any(item.creates_event() for item in self.items)

    def ensure_event_id(self) -> str | None:
        """Give event envelopes an ``event_id`` if they lack one, as Relay's ``parse_request``.

        Returns the (possibly new, simple-hex) event id, or ``None`` for envelopes without an
        event and without an id.
        """
        event_id = self.event_id
        if event_id is None and self.creates_event():
            event_id = self.headers["event_id"] = uuid.uuid4().hex
        return event_id

    def serialize(self) -> bytes:
        """Serialize to the envelope wire format.

        Every item header gets ``length`` set to the actual payload size, and every payload is
        followed by a newline, as Relay writes envelopes.
        """
        parts = [_json_encode(self.headers), b"\n"]
        for item in self.items:
            headers = item.headers
            size = len(item.payload)
            length = headers.get("length")
            if type(length) is not int or length != size:
                # Copy instead of mutating the item just because it was serialized.
                headers = {**headers, "length": size}
            parts += (_json_encode(headers), b"\n", item.payload, b"\n")
        return b"".join(parts)


def _object_end(data: bytes, start: int) -> int:
    """Return the index just past the JSON object starting at ``data[start] == "{"``.

    Only needed for headers that are not one clean line (pretty-printed JSON, or junk after the
    object); braces inside strings are skipped. The result is validated by the JSON decoder.
    """
    depth = 0
    pos = start
    while True:
        match = _BRACE_OR_QUOTE.search(data, pos)
        if match is None:
            raise InvalidEnvelope("invalid header: unexpected end of JSON")
        pos = match.end()
        char = data[match.start()]
        if char == _OPEN_BRACE:
            depth += 1
        elif char == _CLOSE_BRACE:
            depth -= 1
            if depth == 0:
                return pos
        else:
            string = _STRING_REST.match(data, pos)
            if string is None:
                raise InvalidEnvelope("invalid header: unterminated string")
            pos = string.end()


def _read_header(data: bytes, view: memoryview, pos: int, what: str) -> tuple[Any, int] | None:
    """Decode the JSON header at ``pos``: returns (value, index after it), or None at the end.

    Like serde_json's stream deserializer, leading whitespace is skipped. The value must be
    followed by ``\\n`` or the end of the data.
    """
    size = len(data)
    if pos < size and data[pos] != _OPEN_BRACE:
        match = _NON_WS.search(data, pos)
        if match is None:
            return None
        pos = match.start()
    elif pos >= size:
        return None
    newline = data.find(b"\n", pos)
    line_end = size if newline == -1 else newline
    # Fast path: the header is exactly one line ending in "}".
    if data[line_end - 1] == _CLOSE_BRACE:
        try:
            return _json_decode(view[pos:line_end]), line_end
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass
    if data[pos] != _OPEN_BRACE:
        raise InvalidEnvelope(f"invalid {what}: expected a JSON object")
    end = _object_end(data, pos)
    try:
        value = _json_decode(view[pos:end])
    except msgspec.DecodeError as exc:
        raise InvalidEnvelope(f"invalid {what}: {exc}") from exc
    except UnicodeDecodeError:
        # msgspec reports invalid UTF-8 inside strings this way rather than as DecodeError.
        raise InvalidEnvelope(f"invalid {what}: invalid UTF-8") from None
    if end < size and data[end] != _NEWLINE:
        raise InvalidEnvelope(f"missing newline after {what}")
    return value, end


def _validate_envelope_headers(headers: dict[str, Any]) -> None:
    event_id = headers.get("event_id")
    if event_id is not None and (
        not isinstance(event_id, str) or _UUID_RE.fullmatch(event_id) is None
    ):
        raise InvalidEnvelope(f"invalid envelope header: bad event_id {event_id!r}")
    sent_at = headers.get("sent_at")
    if sent_at is not None and (not isinstance(sent_at, str) or _parse_datetime(sent_at) is None):
        raise InvalidEnvelope(f"invalid envelope header: bad sent_at {sent_at!r}")
    dsn = headers.get("dsn")
    if dsn is not None and not _valid_envelope_dsn(dsn):
        raise InvalidEnvelope(f"invalid envelope header: bad dsn {dsn!r}")


def _valid_envelope_dsn(dsn: Any) -> bool:
    # Relay's PartialDsn: a valid DSN whose project id is a u64 and whose key is a project key.
    if not isinstance(dsn, str):
        return False
    try:
        parsed = parse_dsn(dsn)
    except AuthError:
        return False
    return parsed.numeric_project_id is not None and check_public_key(parsed.public_key)


def parse_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse an envelope with Relay's framing rules (see the module docstring).

    Raises :class:`~relay.errors.InvalidEnvelope` on any malformation.
    """
    # Payloads are slices of `data`, so they must come out as `bytes`.
    data = data if isinstance(data, bytes) else bytes(data)
    view = memoryview(data)
    size = len(data)

    header = _read_header(data, view, 0, "envelope header")
    if header is None:
        raise InvalidEnvelope("missing envelope header")
    headers, pos = header
    if not isinstance(headers, dict):
        raise InvalidEnvelope("invalid envelope header: expected a JSON object")
    _validate_envelope_headers(headers)
    pos += 1

    items: list[Item] = []
    while pos < size:
        item_header = _read_header(data, view, pos, "item header")
        if item_header is None:
            raise InvalidEnvelope("unexpected end of file")
        item_headers, header_end = item_header
        if not isinstance(item_headers, dict):
            raise InvalidEnvelope("invalid item header: expected a JSON object")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str):
            raise InvalidEnvelope("invalid item header: missing or non-string type")
        if item_type in ITEM_TYPE_ALIASES:
            item_headers["type"] = ITEM_TYPE_ALIASES[item_type]

        # The last header needs no newline, so the payload may start past the end.
        start = min(header_end + 1, size)
        if "length" in item_headers:
            length = item_headers["length"]
            if type(length) is not int or length < 0:
                raise InvalidEnvelope(f"invalid item header: bad length {length!r}")
            end = start + length
            if end > size:
                raise InvalidEnvelope("unexpected end of file: item payload is truncated")
            if end < size and data[end] != _NEWLINE:
                raise InvalidEnvelope("missing newline after item payload")
        else:
            newline = data.find(b"\n", start)
            end = size if newline == -1 else newline

        items.append(Item(item_headers, data[start:end]))
        if len(items) > MAX_ENVELOPE_ITEMS:
            raise InvalidEnvelope("too many items in envelope")
        pos = end + 1

    return Envelope(headers, items)


class MinimalEvent(msgspec.Struct):
    """The two fields of an event payload Relay reads synchronously on the store endpoint."""

    event_id: str | None = None
    type: str | None = None


_minimal_event_decoder: Final = msgspec.json.Decoder(MinimalEvent)


def parse_minimal_event(data: bytes) -> MinimalEvent:
    """Validate a JSON event and read its ``event_id`` and ``type``.

    Raises :class:`~relay.errors.InvalidJson` if the payload is not a JSON object or the
    ``event_id`` is not a valid UUID (Relay rejects both on the store endpoint).
    """
    try:
        event = _minimal_event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidJson(f"invalid event JSON: {exc}") from exc
    if event.event_id is not None and _UUID_RE.fullmatch(event.event_id) is None:
        raise InvalidJson(f"invalid event_id {event.event_id!r}")
    return event


def envelope_from_event(
    event: bytes | dict[str, Any],
    event_id: str,
    headers: dict[str, Any] | None = None,
    *,
    event_type: str | None = None,
) -> Envelope:
    """Wrap a store-endpoint event into an envelope with a single event item.

    The item type follows the event's ``type`` as Relay's ``ItemType::from_event_type``:
    "transaction" -> transaction, "csp" -> security, "feedback" -> feedback, else event. For a
    ``bytes`` event, pass ``event_type`` if already known (from :func:`parse_minimal_event`) to
    avoid decoding the payload again. ``headers`` are extra envelope headers.
    """
    if isinstance(event, dict):
        if event_type is None:
            event_type = _str_or_none(event.get("type"))
        payload = _json_encode(event)
    else:
        if event_type is None:
            event_type = parse_minimal_event(event).type
        payload = event
    item = Item.new(item_type_for_event_type(event_type), payload, content_type="application/json")
    envelope_headers: dict[str, Any] = {"event_id": event_id}
    if headers:
        envelope_headers.update(headers)
    return Envelope(envelope_headers, [item])
