"""Uploads of large attachments outside envelopes: TUS headers, signed locations, placeholders.

Relay takes big attachments (minidumps over ``relay.attachment-inline.limit``, or files an
SDK uploads itself) through a subset of the TUS 1.0.0 protocol at
``/api/{project_id}/upload/``: a ``POST`` creates an upload and answers its *location*, a
``PATCH`` to that location sends the bytes and answers the *final* location. The envelope
then carries a placeholder item (content type :data:`ATTACHMENT_REF_CONTENT_TYPE`) whose
JSON payload points at the final location, instead of the bytes.

A location is ``/api/{project_id}/upload/{key}/?upload_length=N[&upload_id=...]`` plus
``upload_signature``: the relay that stores the bytes (the processing relay, which talks to
objectstore) signs it with its key, so that nobody can forge a reference to another
project's object or change its length. Provisional locations (where bytes may still be
sent) have no length or an ``upload_id``; a final location has a length and no id.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, urlencode

import msgspec

from relay.errors import BadRequest, RelayError, UnsupportedMediaType
from relay.protocol.keys import PublicKey, SecretKey, UnpackError

TUS_RESUMABLE: Final = "Tus-Resumable"
TUS_VERSION_HEADER: Final = "Tus-Version"
TUS_EXTENSION: Final = "Tus-Extension"
TUS_VERSION: Final = "1.0.0"
UPLOAD_LENGTH: Final = "Upload-Length"
UPLOAD_DEFER_LENGTH: Final = "Upload-Defer-Length"
UPLOAD_OFFSET: Final = "Upload-Offset"
UPLOAD_METADATA: Final = "Upload-Metadata"
UPLOAD_CHUNK_SIZE: Final = "Upload-Chunk-Size"
DECODED_CONTENT_LENGTH: Final = "X-Decoded-Content-Length"
#: The only body type a TUS ``PATCH`` may have.
PATCH_CONTENT_TYPE: Final = "application/offset+octet-stream"
#: The content type of a placeholder item standing for an uploaded attachment.
ATTACHMENT_REF_CONTENT_TYPE: Final = "application/vnd.sentry.attachment-ref+json"
#: Outcome reason of a placeholder whose location is missing, forged or expired.
INVALID_ATTACHMENT_REF: Final = "invalid_placeholder_attachment"
#: Global-config option: the size up to which attachments stay in the envelope.
INLINE_LIMIT_OPTION: Final = "relay.attachment-inline.limit"
#: Global-config option: the chunk size advertised to TUS clients (0: none).
CHUNK_SIZE_OPTION: Final = "relay.upload-chunk.size"

_LOCATION_PATH = re.compile(r"^/api/(?P<project_id>[1-9][0-9]{0,18})/upload/(?P<key>[^/?#]+)/$")


class TusVersionError(RelayError):
    """The request does not speak TUS 1.0.0 (412, naming the supported version)."""

    status = 412
    reason = "invalid"

    def __init__(self, got: str | None) -> None:
        super().__init__(f"expected {TUS_RESUMABLE}: {TUS_VERSION}, got: {got or '(missing)'}")
        self.headers = {TUS_VERSION_HEADER: TUS_VERSION}


class TusContentTypeError(UnsupportedMediaType):
    """A ``POST`` with a body type, or a ``PATCH`` whose body is not an offset stream."""


class TusHeaderError(BadRequest):
    """A missing or malformed length, offset or metadata header."""


@dataclass(frozen=True, slots=True)
class PostHeaders:
    """What a creation request declares: the total length (``None``: deferred) and type."""

    upload_length: int | None
    attachment_type: str | None


@dataclass(frozen=True, slots=True)
class PatchHeaders:
    """What an upload request declares: where the bytes start and how many follow."""

    upload_offset: int
    decoded_content_length: int | None


def _uint(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None
    return int(value.strip())


def _optional(value: int | None) -> str:
    return "None" if value is None else f"Some({value})"


def _check_version(headers: Mapping[str, str]) -> None:
    version = headers.get(TUS_RESUMABLE)
    if version != TUS_VERSION:
        raise TusVersionError(version)


def parse_post_headers(headers: Mapping[str, str]) -> PostHeaders:
    """Validate the headers of a TUS creation request (``POST``)."""
    _check_version(headers)
    content_type = headers.get("Content-Type")
    if content_type is not None:
        raise TusContentTypeError(f"expected Content-Type: none, got: {content_type}")
    length = _uint(headers, UPLOAD_LENGTH)
    defer = _uint(headers, UPLOAD_DEFER_LENGTH)
    if length is not None and defer is None:
        upload_length: int | None = length
    elif length is None and defer == 1:
        upload_length = None
    else:
        # Worded as Relay words it (Rust's debug form of optional numbers).
        raise TusHeaderError(
            f"expected {UPLOAD_LENGTH} or {UPLOAD_DEFER_LENGTH}=1, got "
            f"{UPLOAD_LENGTH}={_optional(length)}, {UPLOAD_DEFER_LENGTH}={_optional(defer)}"
        )
    return PostHeaders(upload_length, parse_metadata(headers.get(UPLOAD_METADATA)))


def parse_patch_headers(headers: Mapping[str, str]) -> PatchHeaders:
    """Validate the headers of a TUS upload request (``PATCH``)."""
    _check_version(headers)
    content_type = headers.get("Content-Type")
    if content_type != PATCH_CONTENT_TYPE:
        raise TusContentTypeError(
            f"expected Content-Type: {PATCH_CONTENT_TYPE}, got: {content_type or ''}"
        )
    offset = _uint(headers, UPLOAD_OFFSET)
    if offset is None:
        raise TusHeaderError(f"expected {UPLOAD_OFFSET} >= 0")
    return PatchHeaders(offset, _uint(headers, DECODED_CONTENT_LENGTH))


class _Metadata(msgspec.Struct):
    attachment_type: str = "event.attachment"


def parse_metadata(value: str | None) -> str | None:
    """The attachment type in an ``Upload-Metadata`` header's ``sentry`` pair, if any.

    TUS metadata is a comma-separated list of ``key base64value``; Sentry's is a base64
    JSON object ``{"attachment_type": ...}``.
    """
    if value is None:
        return None
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if key != "sentry":
            continue
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise TusHeaderError("invalid base64 in `sentry` Upload-Metadata value") from None
        try:
            return msgspec.json.decode(decoded, type=_Metadata).attachment_type
        except msgspec.DecodeError as error:
            raise TusHeaderError(f"invalid `sentry` Upload-Metadata payload: {error}") from None
    return None


def metadata_header(attachment_type: str) -> str:
    """The ``Upload-Metadata`` value announcing an upload's attachment type."""
    payload = msgspec.json.encode({"attachment_type": attachment_type})
    return f"sentry {base64.b64encode(payload).decode()}"


@dataclass(frozen=True, slots=True)
class Location:
    """Where an upload lives; ``upload_length``/``upload_id`` tell what may still be sent."""

    project_id: int
    key: str
    upload_length: int | None = None
    upload_id: str | None = None
    #: Other ``upload_*`` query parameters: kept (and signed) as they came.
    other: tuple[tuple[str, str], ...] = field(default=())

    @property
    def is_final(self) -> bool:
        """Whether the upload is complete: a known length and no resumable session."""
        return self.upload_length is not None and self.upload_id is None

    def uri(self) -> str:
        """The path and query the signature covers."""
        params: list[tuple[str, str]] = []
        if self.upload_length is not None:
            params.append(("upload_length", str(self.upload_length)))
        if self.upload_id is not None:
            params.append(("upload_id", self.upload_id))
        params.extend(sorted(self.other))
        path = f"/api/{self.project_id}/upload/{self.key}/"
        return f"{path}?{urlencode(params)}" if params else path


@dataclass(frozen=True, slots=True)
class SignedLocation:
    """A location with the signature of the relay that created it."""

    location: Location
    signature: str

    def uri(self) -> str:
        """The ``Location`` header value: the location with ``upload_signature`` appended."""
        base = self.location.uri()
        separator = "?" if base.endswith("/") else "&"
        return f"{base}{separator}upload_signature={self.signature}"


def parse_location(uri: str) -> SignedLocation | None:
    """A signed location from a ``Location`` header or placeholder (not yet verified)."""
    path, question, query = uri.partition("?")
    match = _LOCATION_PATH.match(path)
    if match is None or not question:
        return None
    return location_from_query(int(match["project_id"]), match["key"], parse_qsl(query))


def location_from_query(
    project_id: int, key: str, query: list[tuple[str, str]]
) -> SignedLocation | None:
    """A signed location from a path's ids and its query pairs (``None`` if unsigned).

    ``length`` and ``signature`` are accepted for ``upload_length`` and
    ``upload_signature``; parameters not starting with ``upload_`` are not part of it
    (``sentry_key``, for one).
    """
    length: int | None = None
    upload_id: str | None = None
    signature: str | None = None
    other: list[tuple[str, str]] = []
    for name, value in query:
        if name in ("upload_length", "length"):
            if not (value.isascii() and value.isdigit()):
                return None
            length = int(value)
        elif name == "upload_id":
            upload_id = value
        elif name in ("upload_signature", "signature"):
            signature = value
        elif name.startswith("upload_"):
            other.append((name, value))
    if signature is None or (upload_id is not None and length is None):
        return None
    return SignedLocation(Location(project_id, key, length, upload_id, tuple(other)), signature)


def sign_location(
    location: Location, key: SecretKey, now: datetime | None = None
) -> SignedLocation:
    """Sign a location with this relay's upload signing key."""
    return SignedLocation(location, key.sign(location.uri().encode(), now))


def verify_location(
    signed: SignedLocation,
    key: PublicKey,
    max_age: timedelta,
    now: datetime | None = None,
) -> Location | None:
    """The location, if its signature is valid and younger than ``max_age``."""
    try:
        key.verify_or_raise(signed.location.uri().encode(), signed.signature, max_age, now)
    except UnpackError:
        return None
    return signed.location


class Placeholder(msgspec.Struct, omit_defaults=True):
    """The payload of an attachment placeholder item."""

    location: str
    content_type: str | None = None


def encode_placeholder(location: str, content_type: str | None) -> bytes:
    """The JSON payload of a placeholder for the upload at ``location``."""
    return msgspec.json.encode(Placeholder(location, content_type))


def decode_placeholder(payload: bytes) -> Placeholder | None:
    """A placeholder payload, or ``None`` if it is not one."""
    try:
        return msgspec.json.decode(payload, type=Placeholder)
    except msgspec.DecodeError:
        return None


def new_upload_key() -> str:
    """A fresh object key: a time-ordered UUID (version 7) in simple hex form."""
    millis = time.time_ns() // 1_000_000
    value = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    value[6] = (value[6] & 0x0F) | 0x70  # version 7
    value[8] = (value[8] & 0x3F) | 0x80  # RFC 4122 variant
    return value.hex()
