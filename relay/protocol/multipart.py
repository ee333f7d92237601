"""``multipart/form-data`` bodies (minidump and attachment uploads) and Relay's form-data items.

The parser works on a body already read within the endpoint's limit, so it needs no streaming:
it splits on the boundary, reads each part's headers (``Content-Disposition`` name and
filename, ``Content-Type``) and slices the data without copying more than once.

Plain form fields end up in one ``form_data`` item, serialized as Relay does it: each entry is
two strings (key, value), each with a 4-byte little-endian length prefix.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from email.message import Message
from typing import Final

import msgspec

from relay.errors import BadRequest

__all__ = [
    "FormDataWriter",
    "InvalidMultipart",
    "Part",
    "embedded_boundary",
    "iter_form_data",
    "parse_boundary",
    "parse_multipart",
]


class InvalidMultipart(BadRequest):
    """The body is not valid multipart data (Relay's ``BadStoreRequest::InvalidMultipart``)."""

    reason = "invalid_multipart"

    def __init__(self, cause: str) -> None:
        super().__init__("invalid multipart data")
        self.__cause__ = ValueError(cause)


class Part(msgspec.Struct, frozen=True):
    """One part of a multipart body."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


#: At most this many parts are parsed; more is not a crash upload but an attack.
MAX_PARTS: Final = 1000
_MAX_HEADER_BYTES: Final = 16 * 1024


def parse_boundary(content_type: str | None) -> str:
    """The boundary parameter of a ``multipart/form-data`` Content-Type header."""
    if not content_type:
        raise InvalidMultipart("Content-Type is missing")
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise InvalidMultipart("Content-Type is not multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise InvalidMultipart("multipart boundary not found in Content-Type")
    return boundary


def embedded_boundary(data: bytes) -> str | None:
    """The boundary of a multipart body nested in an upload (Relay's ``get_multipart_boundary``).

    The first non-empty line must start with ``--``; the rest of it is the boundary.
    """
    for line in re.split(rb"[\r\n]", data[:1024]):
        if line:
            if len(line) > 2 and line.startswith(b"--"):
                try:
                    return line[2:].decode()
                except UnicodeDecodeError:
                    return None
            return None
    return None


def _disposition(headers: Message) -> tuple[str | None, str | None]:
    if headers.get("content-disposition") is None:
        return None, None
    name = headers.get_param("name", header="content-disposition")
    filename = headers.get_filename()
    return (
        name if isinstance(name, str) else None,
        filename if isinstance(filename, str) else None,
    )


def _parse_headers(raw: bytes) -> Message:
    message = Message()
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise InvalidMultipart("malformed part header")
        message[name.strip().decode("latin-1")] = value.strip().decode("utf-8", "replace")
    return message


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body into parts. Raises :class:`InvalidMultipart` when malformed.

    Like multer (Relay's parser), a missing final newline after the closing delimiter is fine,
    and anything before the first delimiter (the preamble) is ignored.
    """
    delimiter = b"--" + boundary.encode()
    start = body.find(delimiter)
    if start == -1:
        raise InvalidMultipart("incomplete stream: no boundary")
    parts: list[Part] = []
    pos = start + len(delimiter)
    separator = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", pos):
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end == -1:
            raise InvalidMultipart("incomplete stream")
        # Whitespace may follow the delimiter before the line break (RFC 2046 transport padding).
        if body[pos:line_end].strip(b" \t"):
            raise InvalidMultipart("malformed boundary line")
        header_start = line_end + 2
        header_end = body.find(b"\r\n\r\n", header_start - 2)
        if header_end == -1 or header_end - header_start > _MAX_HEADER_BYTES:
            raise InvalidMultipart("incomplete part headers")
        headers = _parse_headers(body[header_start:header_end])
        data_start = header_end + 4
        data_end = body.find(separator, data_start)
        if data_end == -1:
            raise InvalidMultipart("incomplete field data")
        name, filename = _disposition(headers)
        parts.append(
            Part(
                name=name,
                filename=filename,
                content_type=headers.get("content-type"),
                data=body[data_start:data_end],
            )
        )
        if len(parts) > MAX_PARTS:
            raise InvalidMultipart("too many parts")
        pos = data_end + len(separator)


_LEN: Final = struct.Struct("<I")


class FormDataWriter:
    """Serializes plain form fields into the payload of a ``form_data`` item."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def append(self, key: str, value: str) -> None:
        """Add one field."""
        for text in (key, value):
            raw = text.encode("utf-8", "surrogatepass")
            self._chunks += [_LEN.pack(len(raw)), raw]
            self._size += 4 + len(raw)

    def __len__(self) -> int:
        return self._size

    def getvalue(self) -> bytes:
        """The serialized fields."""
        return b"".join(self._chunks)


def iter_form_data(data: bytes) -> Iterator[tuple[str, str]]:
    """The (key, value) fields of a ``form_data`` payload; stops at the first broken entry."""
    pos = 0
    size = len(data)
    while pos < size:
        fields: list[str] = []
        for _ in range(2):
            if pos + 4 > size:
                return
            (length,) = _LEN.unpack_from(data, pos)
            pos += 4
            if pos + length > size:
                return
            try:
                fields.append(data[pos : pos + length].decode())
            except UnicodeDecodeError:
                return
            pos += length
        yield fields[0], fields[1]
