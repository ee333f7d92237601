"""Uploading large attachments: to the upstream (TUS) or, in processing relays, to objectstore.

Two operations, as in Relay's upload service:

* **create** an upload for a project: answers a signed, provisional location;
* **upload** bytes to a location: answers the final location and how many bytes it holds.

A POP relay (or a processing relay without objectstore) passes both on to its upstream's
``/api/{project_id}/upload/`` endpoint. A processing relay with objectstore signs the
locations itself, verifies them when the bytes come, and stores the bytes in objectstore,
under the location's key, for the project's event retention.

Uploads are bounded in number (``upload.max_concurrent_requests``; over it they are
refused, not queued) and in time (``upload.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from relay.config import Config, UploadSection
from relay.protocol.encoding import zstd_compress
from relay.protocol.keys import Credentials, PublicKey, SecretKey
from relay.protocol.objectstore import (
    ATTACHMENTS_USECASE,
    RETRYABLE_STATUSES,
    normalize_content_type,
)
from relay.protocol.upload import (
    DECODED_CONTENT_LENGTH,
    PATCH_CONTENT_TYPE,
    TUS_RESUMABLE,
    TUS_VERSION,
    UPLOAD_DEFER_LENGTH,
    UPLOAD_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_OFFSET,
    Location,
    SignedLocation,
    metadata_header,
    new_upload_key,
    parse_location,
    sign_location,
    verify_location,
)
from relay.server.objectstore import ObjectAttributes, ObjectstoreClient, UploadError
from relay.server.upstream import UpstreamClient, UpstreamError


class _Elapsed(Exception):
    def __str__(self) -> str:
        return "deadline has elapsed"


class UploadFailed(Exception):
    """An upload that did not succeed, with the HTTP status to answer a client with."""

    def __init__(self, detail: str, status: int = 500) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True, slots=True)
class UploadProject:
    """Whose upload it is: what the upstream authenticates and objectstore scopes by."""

    project_id: int
    public_key: str
    org_id: int
    retention_days: int


@dataclass(frozen=True, slots=True)
class Uploaded:
    """Where an upload stands: its location (final once complete) and the bytes stored."""

    location: str
    length: int


class UploadBackend(Protocol):
    """Where uploads go."""

    async def create(self, project: UploadProject, length: int | None,
                     attachment_type: str | None) -> str:  # fmt: skip
        """Create an upload; returns its provisional location URI."""

    async def upload(
        self, project: UploadProject, location: str, data: bytes, offset: int = 0
    ) -> Uploaded:
        """Send bytes of an upload, from ``offset``, to its provisional location."""


class UpstreamUploads:
    """Passes uploads on to the upstream's TUS endpoint."""

    def __init__(self, upstream: UpstreamClient, config: Config) -> None:
        self.upstream = upstream
        self.timeout = config.upload.timeout
        self.compress = config.http.encoding != "identity"
        self.retry_delay = config.http.retry_delay
        self.max_retry_interval = config.http.max_retry_interval

    def _auth(self, project: UploadProject) -> dict[str, str]:
        return {"X-Sentry-Auth": f"Sentry sentry_key={project.public_key}",
                TUS_RESUMABLE: TUS_VERSION}  # fmt: skip

    async def _send(self, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int, dict[str, str]]:  # fmt: skip
        try:
            status, response_headers, _ = await self.upstream.request(
                method, path, body=body, headers=headers, sign_data=b"", timeout=self.timeout,
                no_content_type="Content-Type" not in headers,
            )  # fmt: skip
        except UpstreamError as error:
            if isinstance(error.__cause__, TimeoutError):
                raise UploadFailed("request timeout: deadline has elapsed", 504) from _Elapsed()
            raise UploadFailed(f"upload request failed: {error}", 502) from error
        if status >= 300:
            raise UploadFailed(f"upstream answered {status} to {method} {path}", status)
        return status, dict(response_headers)

    async def create(self, project: UploadProject, length: int | None,
                     attachment_type: str | None) -> str:  # fmt: skip
        headers = self._auth(project)
        if length is None:
            headers[UPLOAD_DEFER_LENGTH] = "1"
        else:
            headers[UPLOAD_LENGTH] = str(length)
        if attachment_type is not None:
            headers[UPLOAD_METADATA] = metadata_header(attachment_type)
        path = f"/api/{project.project_id}/upload/"
        delay = self.retry_delay
        while True:
            # Creating is idempotent enough to retry: a failed attempt leaves nothing behind.
            # (The service's timeout bounds the attempts.)
            try:
                _, response = await self._send("POST", path, b"", headers)
                break
            except UploadFailed as error:
                if error.status not in RETRYABLE_STATUSES:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_interval)
        location = response.get("Location")
        if location is None or parse_location(location) is None:
            raise UploadFailed(f"upstream provided an invalid location: {location!r}")
        return location

    async def upload(
        self, project: UploadProject, location: str, data: bytes, offset: int = 0
    ) -> Uploaded:
        headers = self._auth(project)
        headers["Content-Type"] = PATCH_CONTENT_TYPE
        headers[UPLOAD_OFFSET] = str(offset)
        signed = parse_location(location)
        if signed is not None and signed.location.upload_id is not None:
            # A chunk of a resumable upload: the upstream checks it against the remainder.
            headers[DECODED_CONTENT_LENGTH] = str(len(data))
        body = data
        if self.compress:
            body = zstd_compress(data)
            headers["Content-Encoding"] = "zstd"
        _, response = await self._send("PATCH", location, body, headers)
        final = response.get("Location")
        stored = response.get(UPLOAD_OFFSET, "")
        if not (stored.isascii() and stored.isdigit()):
            raise UploadFailed(f"upstream provided an invalid {UPLOAD_OFFSET}: {stored!r}")
        if final is None or parse_location(final) is None:
            raise UploadFailed(f"upstream provided an invalid location: {final!r}")
        return Uploaded(final, int(stored))


class ObjectstoreUploads:
    """Signs locations and stores the bytes in objectstore (processing relays)."""

    def __init__(self, client: ObjectstoreClient, keys: UploadKeys) -> None:
        self.client = client
        self.keys = keys

    async def create(self, project: UploadProject, length: int | None,
                     attachment_type: str | None) -> str:  # fmt: skip
        location = Location(project.project_id, new_upload_key(), length)
        return self.keys.sign(location).uri()

    async def upload(
        self, project: UploadProject, location: str, data: bytes, offset: int = 0
    ) -> Uploaded:
        signed = parse_location(location)
        provisional = self.keys.verify(signed) if signed is not None else None
        if provisional is None or provisional.project_id != project.project_id:
            raise UploadFailed("invalid upload location", 400)
        if provisional.upload_id is not None or offset != 0:
            # Locations signed here are never resumable: one PATCH carries all bytes.
            raise UploadFailed("resumable uploads are not supported", 400)
        if provisional.upload_length is not None and provisional.upload_length != len(data):
            raise UploadFailed("the upload does not have the announced length", 400)
        attributes = ObjectAttributes(
            content_type=normalize_content_type(None, None),
            retention_days=project.retention_days,
            # A deferred length gets a key from objectstore, as in Relay.
            key=provisional.key if provisional.upload_length is not None else None,
        )
        try:
            # Stored as sent, as Relay streams it: uncompressed.
            key = await self.client.put(ATTACHMENTS_USECASE, project.org_id, project.project_id,
                                        data, attributes, compress=False)  # fmt: skip
        except UploadError as error:
            raise UploadFailed(f"objectstore upload failed: {error}") from error
        final = Location(project.project_id, key, len(data), None, provisional.other)
        return Uploaded(self.keys.sign(final).uri(), len(data))


@dataclass(frozen=True, slots=True)
class UploadKeys:
    """The keys that sign and verify upload locations, and how long a location is valid."""

    signing: SecretKey | None
    verification: PublicKey | None
    max_age: timedelta

    @classmethod
    def from_config(cls, section: UploadSection, credentials: Credentials | None) -> UploadKeys:
        """``upload.credentials`` if set, else the relay's own key pair (as Relay does)."""
        signing: SecretKey | None = None
        verification: PublicKey | None = None
        if section.credentials is not None:
            if section.credentials.signing_key:
                signing = SecretKey.parse(section.credentials.signing_key)
            verification = PublicKey.parse(section.credentials.verification_key)
        elif credentials is not None:
            signing = credentials.get_secret_key()
            verification = credentials.get_public_key()
        return cls(signing, verification, timedelta(seconds=section.max_age))

    def sign(self, location: Location) -> SignedLocation:
        """Sign a location; fails without a signing key."""
        if self.signing is None:
            raise UploadFailed("no key to sign upload locations (relay credentials)")
        return sign_location(location, self.signing)

    def verify(self, signed: SignedLocation, now: datetime | None = None) -> Location | None:
        """The location if this relay's verification key accepts its signature."""
        if self.verification is None:
            return None
        return verify_location(signed, self.verification, self.max_age, now or datetime.now(UTC))


class UploadService:
    """Bounds uploads in number and time and sends them to the backend."""

    def __init__(self, backend: UploadBackend, section: UploadSection) -> None:
        self.backend = backend
        self.timeout = section.timeout
        self._free = section.max_concurrent_requests

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        # Relay keeps no backlog: an upload over the limit is refused at once.
        if self._free <= 0:
            raise UploadFailed("loadshed", 503)
        self._free -= 1
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError:
            raise UploadFailed("request timeout: deadline has elapsed", 504) from _Elapsed()
        finally:
            self._free += 1

    async def create(self, project: UploadProject, length: int | None,
                     attachment_type: str | None) -> str:  # fmt: skip
        """Create an upload; returns its provisional location."""
        async with self._slot():
            return await self.backend.create(project, length, attachment_type)

    async def upload(
        self, project: UploadProject, location: str, data: bytes, offset: int = 0
    ) -> Uploaded:
        """Send the bytes of an upload created before, from ``offset``."""
        async with self._slot():
            return await self.backend.upload(project, location, data, offset)

    async def upload_bytes(
        self, project: UploadProject, data: bytes, attachment_type: str | None
    ) -> Uploaded:
        """Create an upload of unannounced length and send ``data`` to it."""
        async with self._slot():
            location = await self.backend.create(project, None, attachment_type)
            return await self.backend.upload(project, location, data)


def upload_service(
    config: Config,
    upstream: UpstreamClient,
    credentials: Credentials | None,
    objectstore: ObjectstoreClient | None,
) -> UploadService:
    """Objectstore for processing relays that have one, else the upstream."""
    backend: UploadBackend
    if config.processing.enabled and objectstore is not None:
        keys = UploadKeys.from_config(config.upload, credentials)
        backend = ObjectstoreUploads(objectstore, keys)
    else:
        backend = UpstreamUploads(upstream, config)
    return UploadService(backend, config.upload)
