"""Objectstore facts that need no I/O: which items are uploaded, how, and where.

Processing relays may store attachment payloads in Sentry's objectstore and put only the
object's key (``stored_id``) into the Kafka message. The HTTP client lives in
:mod:`relay.server.objectstore`; this module decides and formats.
"""

from __future__ import annotations

import base64
import mimetypes
import random
import re
import time
from typing import Final
from urllib.parse import quote

import msgspec
from nacl.signing import SigningKey

from relay.protocol.envelope import Item
from relay.protocol.items import ATTACHMENT_REF_CONTENT_TYPES, ItemType

#: The usecase of event attachments (minidumps, screenshots, ...).
ATTACHMENTS_USECASE: Final = "attachments"
#: Global-config option: the share of envelopes whose attachments go to objectstore.
SAMPLE_RATE_OPTION: Final = "relay.objectstore-attachments.sample-rate"

OCTET_STREAM: Final = "application/octet-stream"
#: Statuses worth another attempt: overload and server-side failures.
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

# A media type's essence: RFC 6838 restricted names, ``type/subtype``.
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE: Final = re.compile(rf"^\s*({_TOKEN}/{_TOKEN})\s*(;.*)?$")
#: Python's built-in extension table only: the system's mime.types files vary by host.
_MIME_TYPES: Final = mimetypes.MimeTypes(filenames=())

# Characters objectstore allows in scope values; anything else cannot be addressed.
_PATH_SAFE: Final = "/:@!$&'()*+,;="


def sample_rate(options: object) -> float:
    """The objectstore sample rate of global-config ``options`` (0 when unset or invalid).

    Relay reads the option leniently: a value of the wrong type counts as unset.
    """
    if not isinstance(options, dict):
        return 0.0
    value = options.get(SAMPLE_RATE_OPTION)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def sampled(rate: float, rng: random.Random | None = None) -> bool:
    """Whether an envelope is kept by a sample ``rate`` (1 keeps all, 0 none)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return (rng or random).random() < rate


def is_attachment_ref(item: Item) -> bool:
    """Whether the item is a placeholder for an attachment uploaded separately."""
    return (
        item.type == ItemType.ATTACHMENT
        and (item.content_type or "").lower() in ATTACHMENT_REF_CONTENT_TYPES
    )


def should_upload(item: Item) -> bool:
    """Whether the item's payload is stored in objectstore (non-empty, real attachments)."""
    return item.type == ItemType.ATTACHMENT and bool(item.payload) and not is_attachment_ref(item)


def normalize_content_type(raw: str | None, filename: str | None) -> str:
    """The IANA media type an attachment is stored with.

    SDKs send arbitrary strings and mostly the generic ``application/octet-stream``:
    parameters (``charset``) are dropped, and a missing, generic or invalid type is guessed
    from the file name, else it is ``application/octet-stream``. Sentry serves attachments
    with the same rule.
    """
    if raw is not None:
        match = _MEDIA_TYPE_RE.match(raw)
        if match:
            essence = match.group(1).lower()
            if essence != OCTET_STREAM:
                return essence
    if filename:
        guessed, _ = _MIME_TYPES.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return OCTET_STREAM


def scope_path(org_id: int, project_id: int) -> str:
    """The scope segment of an object's path (``org=1;project=42``)."""
    return f"org={org_id};project={project_id}"


def object_path(usecase: str, org_id: int, project_id: int, key: str | None = None) -> str:
    """The request path of an object (without a key: where a new object is created)."""
    path = f"/v1/objects/{usecase}/{scope_path(org_id, project_id)}/{key or ''}"
    return quote(path, safe=_PATH_SAFE)


def ttl_header(retention_days: int) -> str:
    """The ``x-sn-expiration`` value that keeps an object for the event's retention."""
    return f"ttl:{max(retention_days, 1)} days"


class ObjectstoreTokenError(ValueError):
    """The configured signing key cannot sign tokens."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_ed25519_pem(pem: str) -> SigningKey:
    """An Ed25519 signing key from a PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``)."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    body = "".join(line for line in lines if line and not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except ValueError as error:
        raise ObjectstoreTokenError("signing_key is not PEM") from error
    # PKCS#8 of an Ed25519 key: a fixed 16-byte prefix, then the 32-byte seed.
    if len(der) != 48 or not der.startswith(bytes.fromhex("302e020100300506032b657004220420")):
        raise ObjectstoreTokenError("signing_key is not an Ed25519 private key")
    return SigningKey(der[16:])


def sign_token(
    key: SigningKey,
    key_id: str,
    usecase: str,
    org_id: int,
    project_id: int,
    *,
    now: float | None = None,
    expiry_seconds: int = 60,
) -> str:
    """A JWT (EdDSA) granting read, write and delete on one usecase and scope."""
    header = {"alg": "EdDSA", "typ": "JWT", "kid": key_id}
    claims = {
        "res": {"os:usecase": usecase, "org": str(org_id), "project": str(project_id)},
        "permissions": ["object.read", "object.write", "object.delete"],
        "exp": int((time.time() if now is None else now) + expiry_seconds),
    }
    signing_input = f"{_b64url(msgspec.json.encode(header))}.{_b64url(msgspec.json.encode(claims))}"
    signature = key.sign(signing_input.encode()).signature
    return f"{signing_input}.{_b64url(signature)}"


class StoredObject(msgspec.Struct, frozen=True):
    """The answer to an upload: the key the object is stored under."""

    key: str
