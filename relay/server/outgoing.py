"""An accepted envelope waiting for the upstream, held as the bytes that will be sent.

A POP whose upstream is slower than its clients holds every envelope it answered 200 until
the upstream takes it. Holding the parsed :class:`~relay.protocol.envelope.Envelope` beside
its serialized body cost about three times the envelope's size in RSS; compressed for the
wire (zstd by default) it is a fraction of it. The envelope is compressed once, when it is
accepted, and parsed again only on the rare paths that need its items: an outcome for a
failed send, or the spool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from relay.protocol.encoding import decode_body
from relay.protocol.envelope import Envelope, parse_envelope
from relay.server.request_meta import RequestMeta
from relay.server.upstream import encode_body

#: Decoding our own compressed bytes needs no size limit beyond the original's.
_NO_LIMIT = 2**62


@dataclass(slots=True, eq=False)
class Outgoing:
    """One envelope on its way upstream: its request meta and its body as sent."""

    meta: RequestMeta
    #: The body in ``encoding`` (``http.encoding``); ``encoding`` None: as serialized.
    wire: bytes
    encoding: str | None
    #: Whether it takes a heavy send slot (relay.server.admission.is_heavy).
    heavy: bool
    event_id: str | None
    accepted_at: float = field(default_factory=time.monotonic)
    #: Set once it went to the spool: shutdown must not spool it a second time.
    spooled: bool = False

    @classmethod
    def encode(
        cls, envelope: Envelope, meta: RequestMeta, body: bytes, encoding: str, *, heavy: bool
    ) -> Outgoing:
        """Hold ``body`` (the serialized ``envelope``) compressed as ``encoding`` says."""
        wire, content_encoding = encode_body(body, encoding)
        return cls(meta, wire, content_encoding, heavy, envelope.event_id)

    def body(self) -> bytes:
        """The serialized envelope (decompressed again)."""
        if self.encoding is None:
            return self.wire
        return decode_body(self.wire, self.encoding, _NO_LIMIT)

    def envelope(self) -> Envelope:
        """The envelope parsed again from :meth:`body` (for outcomes)."""
        return parse_envelope(self.body())
