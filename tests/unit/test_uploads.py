"""The upload service's objectstore backend, its limits, and placeholders in processing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from relay.config import UploadSection
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.keys import generate_credentials
from relay.protocol.upload import (
    ATTACHMENT_REF_CONTENT_TYPE,
    INVALID_ATTACHMENT_REF,
    encode_placeholder,
    parse_location,
)
from relay.server.attachment_refs import resolve, resolve_placeholders
from relay.server.endpoints.crash_uploads import CrashUploads, Decision, inline_limit
from relay.server.objectstore import ObjectAttributes
from relay.server.uploads import (
    ObjectstoreUploads,
    Uploaded,
    UploadFailed,
    UploadKeys,
    UploadProject,
    UploadService,
)

PROJECT = UploadProject(project_id=42, public_key="k" * 32, org_id=1, retention_days=30)


class FakeObjectstore:
    """Records what would be stored; keys are the location's, or made up when deferred."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[bytes, ObjectAttributes, bool]] = {}

    async def put(self, usecase: str, org_id: int, project_id: int, payload: bytes,
                  attributes: ObjectAttributes, *, compress: bool = True) -> str:  # fmt: skip
        key = attributes.key or f"assigned-{len(self.stored)}"
        self.stored[key] = (payload, attributes, compress)
        return key


def _backend() -> tuple[ObjectstoreUploads, FakeObjectstore, UploadKeys]:
    keys = UploadKeys.from_config(UploadSection(), generate_credentials())
    store = FakeObjectstore()
    return ObjectstoreUploads(store, keys), store, keys  # type: ignore[arg-type]


def _placeholder(uploaded: Uploaded, length: int | None = None) -> Item:
    return Item.new(
        ItemType.ATTACHMENT,
        encode_placeholder(uploaded.location, "application/x-dmp"),
        content_type=ATTACHMENT_REF_CONTENT_TYPE,
        attachment_length=uploaded.length if length is None else length,
        attachment_type="event.minidump",
    )


async def test_announced_upload_is_stored_under_its_key() -> None:
    backend, store, keys = _backend()
    location = await backend.create(PROJECT, 5, "event.attachment")
    signed = parse_location(location)
    assert signed is not None and keys.verify(signed) is not None
    uploaded = await backend.upload(PROJECT, location, b"hello")
    final = parse_location(uploaded.location)
    assert final is not None and final.location.is_final
    assert final.location.key == signed.location.key
    payload, attributes, compress = store.stored[final.location.key]
    assert payload == b"hello" and attributes.retention_days == 30 and not compress


async def test_deferred_upload_gets_objectstores_key() -> None:
    backend, store, _ = _backend()
    location = await backend.create(PROJECT, None, None)
    uploaded = await backend.upload(PROJECT, location, b"abc")
    assert uploaded.length == 3
    assert list(store.stored) == ["assigned-0"]


async def test_uploads_to_forged_or_foreign_locations_fail() -> None:
    backend, _, _ = _backend()
    other, _, _ = _backend()
    forged = await other.create(PROJECT, 5, None)
    with pytest.raises(UploadFailed) as error:
        await backend.upload(PROJECT, forged, b"hello")
    assert error.value.status == 400
    location = await backend.create(PROJECT, 5, None)
    with pytest.raises(UploadFailed):
        await backend.upload(PROJECT, location, b"hello!")  # not the announced length
    foreign = UploadProject(project_id=43, public_key="k" * 32, org_id=1, retention_days=30)
    with pytest.raises(UploadFailed):
        await backend.upload(foreign, location, b"hello")


async def test_placeholders_resolve_only_when_signed_final_and_consistent() -> None:
    backend, _, keys = _backend()
    uploaded = await backend.upload(PROJECT, await backend.create(PROJECT, None, None), b"MDMP")
    stored = resolve(_placeholder(uploaded), keys, 42)
    assert stored is not None
    assert (stored.size, stored.content_type) == (4, "application/x-dmp")
    assert resolve(_placeholder(uploaded, length=5), keys, 42) is None
    assert resolve(_placeholder(uploaded), keys, 43) is None
    # A location created with a deferred length cannot stand for stored bytes. (One created
    # with a length has the shape of a final one, in Relay too: it names a key with no
    # object behind it unless the bytes were sent.)
    provisional = Uploaded(await backend.create(PROJECT, None, None), 4)
    assert resolve(_placeholder(provisional), keys, 42) is None
    stranger = UploadKeys.from_config(UploadSection(), generate_credentials())
    assert resolve(_placeholder(uploaded), stranger, 42) is None
    expired = UploadKeys(keys.signing, keys.verification, timedelta(seconds=1))
    later = datetime.now(UTC) + timedelta(minutes=1)
    signed = parse_location(uploaded.location)
    assert signed is not None and expired.verify(signed, later) is None


async def test_invalid_placeholders_are_dropped_with_an_outcome() -> None:
    backend, _, keys = _backend()
    uploaded = await backend.upload(PROJECT, await backend.create(PROJECT, None, None), b"MDMP")
    good = _placeholder(uploaded)
    bad = Item.new(ItemType.ATTACHMENT, b"{}", content_type=ATTACHMENT_REF_CONTENT_TYPE)
    plain = Item.new(ItemType.ATTACHMENT, b"data")
    envelope = Envelope({"event_id": "a" * 32}, [good, bad, plain])
    dropped: list[tuple[Item, str]] = []
    resolved = resolve_placeholders(envelope, keys, 42, lambda i, r: dropped.append((i, r)))
    assert list(resolved) == [id(good)]
    assert envelope.items == [good, plain]
    assert dropped == [(bad, INVALID_ATTACHMENT_REF)]


class SlowBackend:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def create(self, project: UploadProject, length: int | None,
                     attachment_type: str | None) -> str:  # fmt: skip
        await asyncio.sleep(self.delay)
        return "/api/42/upload/k/?upload_signature=s"

    async def upload(self, project: UploadProject, location: str, data: bytes,
                     offset: int = 0) -> Uploaded:  # fmt: skip
        return Uploaded(location, len(data))


async def test_service_refuses_uploads_over_its_limit() -> None:
    service = UploadService(SlowBackend(0.2), UploadSection(max_concurrent_requests=1))
    first = asyncio.create_task(service.upload_bytes(PROJECT, b"x", None))
    await asyncio.sleep(0.05)
    with pytest.raises(UploadFailed) as error:
        await service.create(PROJECT, 1, None)
    assert error.value.status == 503
    assert (await first).length == 1
    # The slot is free again.
    assert await service.create(PROJECT, 1, None)


async def test_service_times_out_with_relays_wording() -> None:
    service = UploadService(SlowBackend(1.0), UploadSection(timeout=0.05))
    with pytest.raises(UploadFailed) as error:
        await service.create(PROJECT, 1, None)
    assert error.value.status == 504
    assert str(error.value) == "request timeout: deadline has elapsed"
    assert str(error.value.__cause__) == "deadline has elapsed"


def test_inline_limit_option_is_read_leniently() -> None:
    assert inline_limit(None) == 0
    assert inline_limit({"options": {"relay.attachment-inline.limit": 16}}) == 16
    for bad in (True, "16", -1, 1.5):
        assert inline_limit({"options": {"relay.attachment-inline.limit": bad}}) == 0


def test_crash_upload_decisions() -> None:
    uploads = CrashUploads(PROJECT, Decision.INLINE, Decision.UPLOAD, None, inline_limit=16)
    assert uploads.decision("event.minidump") is Decision.INLINE
    assert uploads.decision("event.attachment") is Decision.UPLOAD
    assert uploads.decision("event.view_hierarchy") is Decision.INLINE
    assert not uploads.uploads("event.attachment", 16)
    assert uploads.uploads("event.attachment", 17)
    assert not uploads.uploads("event.minidump", 1000)
