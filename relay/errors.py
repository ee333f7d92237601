"""One exception hierarchy for the whole relay.

Every error knows the HTTP status it maps to and, where the data it refers to was
accepted from a client, the outcome reason under which it is discarded. The server maps
these to responses in exactly one place (``relay.server.errors``).
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of all errors the relay raises on purpose."""

    status: int = 500
    #: Outcome reason code (Relay's ``DiscardReason``) for the dropped data.
    reason: str = "internal"
    #: Extra response headers (``Retry-After``, TUS versions, ...).
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(RelayError):
    """The client sent something we cannot parse or accept."""

    status = 400
    reason = "invalid"


class InvalidEnvelope(BadRequest):
    """The envelope framing is broken (header, item header or length)."""

    reason = "invalid_envelope"


class InvalidJson(BadRequest):
    """A JSON body (event, header) does not decode."""

    reason = "invalid_json"


class InvalidCompression(BadRequest):
    """The body does not decode with its ``Content-Encoding``."""

    reason = "invalid_compression"


class AuthError(RelayError):
    """Missing or malformed authentication."""

    status = 401
    reason = "auth_client"


class Forbidden(RelayError):
    """Authenticated, but not allowed (unknown or disabled project, wrong key)."""

    status = 403
    reason = "project_id"


class PayloadTooLarge(RelayError):
    """A size limit was exceeded, before or after decompression."""

    status = 413
    reason = "too_large"


class UnsupportedMediaType(RelayError):
    """The endpoint does not accept this content type."""

    status = 415
    reason = "invalid"


class RateLimited(RelayError):
    """Admission refused for now; the client should retry later."""

    status = 429
    reason = "rate_limited"

    def __init__(
        self, detail: str, retry_after: float = 60.0, rate_limits: str | None = None
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        #: The ``X-Sentry-Rate-Limits`` value telling the client what is limited.
        self.rate_limits = rate_limits


class ServiceUnavailable(RelayError):
    """The relay cannot take data right now (upstream or Kafka down, over budget)."""

    status = 503
    reason = "internal"

    def __init__(self, detail: str, retry_after: float = 60.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConfigError(RelayError):
    """The relay's own configuration is invalid; raised at start-up."""

    status = 500
    reason = "internal"
