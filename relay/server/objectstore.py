"""Uploading attachments to Sentry's objectstore (processing relays).

With ``processing.objectstore.objectstore_url`` set and the global-config option
``relay.objectstore-attachments.sample-rate`` choosing an envelope, the payloads of its
attachments are stored in objectstore and their Kafka messages carry the object's key
(``stored_id``) instead of ``attachment_chunk`` messages. An attachment whose upload fails
goes through Kafka as before (``fallback_to_kafka``, the default) or is dropped with an
``upload_failed`` outcome.

Uploads are zstd-compressed, bounded in concurrency (``max_concurrent_requests``) and in
time (``timeout`` per attachment, retries included); connection errors, 429 and 5xx are
retried after ``retry_delay``, up to ``max_attempts`` attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from relay.config import ObjectstoreSection
from relay.kafka.outcomes import OutcomeCode
from relay.protocol.encoding import zstd_compress
from relay.protocol.envelope import Envelope, Item
from relay.protocol.objectstore import (
    ATTACHMENTS_USECASE,
    RETRYABLE_STATUSES,
    StoredObject,
    load_ed25519_pem,
    normalize_content_type,
    object_path,
    sample_rate,
    sampled,
    should_upload,
    sign_token,
    ttl_header,
)
from relay.protocol.project_config import ProjectState
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)

#: Outcome reason of attachments dropped because their upload failed.
UPLOAD_FAILED = "upload_failed"

GlobalConfigLookup = Callable[[], dict[str, Any] | None]


class UploadError(Exception):
    """An upload that did not succeed; ``attempts`` is 0 when none was made."""

    def __init__(self, message: str, *, attempts: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class ObjectAttributes:
    """What is stored with an object besides its bytes."""

    content_type: str | None = None
    filename: str | None = None
    retention_days: int | None = None
    key: str | None = None


class ObjectstoreClient:
    """A minimal HTTP client of objectstore's ``/v1/objects`` API."""

    def __init__(self, config: ObjectstoreSection) -> None:
        if not config.objectstore_url:
            raise ValueError("objectstore_url is not set")
        self.config = config
        self.base_url = config.objectstore_url.rstrip("/")
        self._signing_key = load_ed25519_pem(config.auth.signing_key) if config.auth else None
        self._slots = asyncio.Semaphore(config.max_concurrent_requests)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=10),
                auto_decompress=False,
            )

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, usecase: str, org_id: int, project_id: int) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._signing_key is not None and self.config.auth is not None:
            token = sign_token(self._signing_key, self.config.auth.key_id, usecase, org_id,
                               project_id)  # fmt: skip
            headers["x-os-auth"] = f"Bearer {token}"
        return headers

    async def put(
        self,
        usecase: str,
        org_id: int,
        project_id: int,
        payload: bytes,
        attributes: ObjectAttributes,
        *,
        compress: bool = True,
    ) -> str:
        """Store ``payload`` (zstd-compressed on the wire unless not ``compress``); returns
        its key. Raises :class:`UploadError` when it fails."""
        if org_id <= 0 or project_id <= 0:
            # Objects are addressed by organization and project: nothing to store them under.
            raise UploadError("invalid scoping")
        headers = self._headers(usecase, org_id, project_id)
        if compress:
            headers["Content-Encoding"] = "zstd"
        if attributes.content_type:
            headers["Content-Type"] = attributes.content_type
        if attributes.filename is not None:
            headers["x-sn-filename"] = attributes.filename
        if attributes.retention_days is not None:
            headers["x-sn-expiration"] = ttl_header(attributes.retention_days)
        body = zstd_compress(payload) if compress else payload
        path = object_path(usecase, org_id, project_id, attributes.key)
        method = "PUT" if attributes.key else "POST"
        attempts = 0
        try:
            async with asyncio.timeout(self.config.timeout):
                while True:
                    attempts += 1
                    try:
                        return await self._attempt(method, path, headers, body)
                    except UploadError as error:
                        if not error.retryable or attempts >= self.config.max_attempts:
                            error.attempts = attempts
                            raise
                    await asyncio.sleep(self.config.retry_delay)
        except TimeoutError:
            raise UploadError("timeout", attempts=attempts) from None

    async def _attempt(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
        if self._session is None:
            raise UploadError("objectstore client is not started")
        async with self._slots:
            try:
                async with self._session.request(
                    method, self.base_url + path, data=body, headers=headers
                ) as response:
                    content = await response.read()
                    if response.status >= 400:
                        raise UploadError(
                            f"objectstore answered {response.status}",
                            retryable=response.status in RETRYABLE_STATUSES,
                        )
            except aiohttp.ClientError as error:
                raise UploadError(f"request failed: {error}", retryable=True) from error
        try:
            return msgspec.json.decode(content, type=StoredObject).key
        except msgspec.DecodeError as error:
            raise UploadError(f"invalid response from objectstore: {error}") from error


class AttachmentUploader:
    """Decides which attachments of an envelope go to objectstore and uploads them."""

    def __init__(
        self,
        client: ObjectstoreClient,
        outcomes: OutcomeSink,
        global_config: GlobalConfigLookup,
    ) -> None:
        self.client = client
        self.outcomes = outcomes
        self.global_config = global_config

    @classmethod
    def from_config(
        cls, config: ObjectstoreSection, outcomes: OutcomeSink, global_config: GlobalConfigLookup
    ) -> AttachmentUploader | None:
        """The uploader, or ``None`` when no objectstore is configured."""
        if not config.objectstore_url:
            return None
        return cls(ObjectstoreClient(config), outcomes, global_config)

    async def start(self) -> None:
        """Open the client's connections."""
        await self.client.start()

    async def stop(self) -> None:
        """Close the client's connections."""
        await self.client.stop()

    def _enabled(self) -> bool:
        global_config = self.global_config() or {}
        return sampled(sample_rate(global_config.get("options")))

    async def upload(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState, retention_days: int
    ) -> dict[int, str]:
        """Upload the envelope's attachments; returns their keys by ``id(item)``.

        Uploaded items get the normalized content type they were stored with. Items whose
        upload failed stay as they are (their payload goes through Kafka), or, without
        ``fallback_to_kafka``, are removed from the envelope with an outcome.
        """
        items = [item for item in envelope.items if should_upload(item)]
        if not items or not self._enabled():
            return {}
        org_id = state.organization_id or 0
        results = await asyncio.gather(
            *(self._upload_item(item, org_id, meta.project_id, retention_days) for item in items),
            return_exceptions=True,
        )
        stored: dict[int, str] = {}
        failed: list[tuple[Item, BaseException]] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, str):
                stored[id(item)] = result
            elif isinstance(result, Exception):
                failed.append((item, result))
            else:
                raise result
        if failed:
            self._handle_failures(failed, envelope, meta, state)
        return stored

    async def _upload_item(
        self, item: Item, org_id: int, project_id: int, retention_days: int
    ) -> str:
        content_type = normalize_content_type(item.content_type, item.filename)
        attributes = ObjectAttributes(
            content_type=content_type, filename=item.filename, retention_days=retention_days
        )
        key = await self.client.put(ATTACHMENTS_USECASE, org_id, project_id, item.payload,
                                    attributes)  # fmt: skip
        # The Kafka message describes the attachment as stored.
        item.headers["content_type"] = content_type
        return key

    def _handle_failures(
        self,
        failed: list[tuple[Item, BaseException]],
        envelope: Envelope,
        meta: RequestMeta,
        state: ProjectState,
    ) -> None:
        attempts = max((e.attempts for _, e in failed if isinstance(e, UploadError)), default=0)
        log.error(
            "failed to upload %d attachment(s) to objectstore in %d attempt(s): %s",
            len(failed), attempts, failed[0][1],
        )  # fmt: skip
        if self.client.config.fallback_to_kafka:
            return
        dropped = {id(item) for item, _ in failed}
        envelope.items = [item for item in envelope.items if id(item) not in dropped]
        for item, _ in failed:
            self.outcomes.item_dropped(
                item, envelope, meta, state, UPLOAD_FAILED, OutcomeCode.INVALID
            )
