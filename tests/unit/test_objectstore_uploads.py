"""Processing relays storing attachments in objectstore (relay.protocol/server.objectstore)."""

from __future__ import annotations

import base64
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import pytest
from aiohttp.test_utils import TestServer
from nacl.signing import SigningKey

from relay.config import ObjectstoreAuth, ObjectstoreSection, config_from_dict
from relay.dev.objectstore import ObjectstoreServer, StoredObject
from relay.kafka.attachments import chunk_attachment
from relay.kafka.outcomes import OutcomeCode
from relay.kafka.producer import KafkaProducer
from relay.kafka.topics import KafkaTopic, resolve_topics
from relay.protocol.envelope import Envelope, Item
from relay.protocol.objectstore import (
    ObjectstoreTokenError,
    is_attachment_ref,
    load_ed25519_pem,
    normalize_content_type,
    object_path,
    sample_rate,
    sampled,
    should_upload,
    sign_token,
    ttl_header,
)
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.objectstore import (
    AttachmentUploader,
    ObjectAttributes,
    ObjectstoreClient,
    UploadError,
)
from relay.server.outcomes import OutcomeSink
from relay.server.processor import Processor
from relay.server.request_meta import RequestMeta

PUBLIC_KEY = "a" * 32
EVENT_ID = "515539018c9b4260a6f999572f1661ee"
STATE = ProjectState(
    project_id=42,
    organization_id=7,
    public_keys=[PublicKeyConfig(public_key=PUBLIC_KEY, numeric_id=123)],
    config={},
)
ALL = {"options": {"relay.objectstore-attachments.sample-rate": 1.0}}
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def _meta() -> RequestMeta:
    return RequestMeta(public_key=PUBLIC_KEY, project_id=42, client="test/1.0")


def _attachment(payload: bytes, **headers: Any) -> Item:
    return Item.new("attachment", payload, **headers)


def _pem(seed: bytes) -> str:
    body = base64.b64encode(PKCS8_ED25519_PREFIX + seed).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"


class _Outcomes:
    def __init__(self) -> None:
        self.dropped: list[tuple[str, str | None, OutcomeCode]] = []

    def item_dropped(
        self, item: Item, envelope: Envelope, meta: RequestMeta, state: object,
        reason: str | None, code: OutcomeCode = OutcomeCode.INVALID, quantities: object = None,
    ) -> None:  # fmt: skip
        self.dropped.append((item.filename or "", reason, code))


# --- pure decisions -----------------------------------------------------------------


def test_normalize_content_type() -> None:
    assert normalize_content_type("Image/PNG", None) == "image/png"
    assert normalize_content_type("text/plain; charset=utf-8", None) == "text/plain"
    # The generic type is less specific than the file name.
    assert normalize_content_type("application/octet-stream", "shot.png") == "image/png"
    assert normalize_content_type(None, "view.txt") == "text/plain"
    assert normalize_content_type("application/x-dmp", "minidump.dmp") == "application/x-dmp"
    assert normalize_content_type(None, None) == "application/octet-stream"
    assert normalize_content_type(None, "crash.unknown-ext") == "application/octet-stream"
    # Content types are arbitrary strings from SDKs; invalid ones never reach objectstore.
    assert normalize_content_type("not a media type", "view.txt") == "text/plain"
    assert normalize_content_type("image", None) == "application/octet-stream"


def test_should_upload() -> None:
    assert should_upload(_attachment(b"x"))
    assert not should_upload(_attachment(b""))
    assert not should_upload(Item.new("event", b"{}"))
    ref = _attachment(b"{}", content_type="application/vnd.sentry.attachment-ref+json")
    assert is_attachment_ref(ref)
    assert not should_upload(ref)


def test_sample_rate_and_sampling() -> None:
    assert sample_rate(None) == 0.0
    assert sample_rate({}) == 0.0
    assert sample_rate({"relay.objectstore-attachments.sample-rate": 0.5}) == 0.5
    assert sample_rate({"relay.objectstore-attachments.sample-rate": 1}) == 1.0
    assert sample_rate({"relay.objectstore-attachments.sample-rate": 7}) == 1.0
    assert sample_rate({"relay.objectstore-attachments.sample-rate": "1"}) == 0.0
    assert sample_rate({"relay.objectstore-attachments.sample-rate": True}) == 0.0
    assert sampled(1.0) and not sampled(0.0)
    rng = random.Random(1)
    kept = sum(sampled(0.25, rng) for _ in range(4000))
    assert 800 < kept < 1200


def test_paths_and_expiration() -> None:
    assert object_path("attachments", 1, 42) == "/v1/objects/attachments/org=1;project=42/"
    assert object_path("attachments", 1, 42, "a b") == (
        "/v1/objects/attachments/org=1;project=42/a%20b"
    )
    assert ttl_header(90) == "ttl:90 days"
    assert ttl_header(0) == "ttl:1 days"


def test_token_signing() -> None:
    seed = bytes(range(32))
    key = load_ed25519_pem(_pem(seed))
    token = sign_token(key, "relay", "attachments", 1, 42, now=1000.0)
    header_b64, claims_b64, signature_b64 = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(decode(header_b64)) == {"alg": "EdDSA", "typ": "JWT", "kid": "relay"}
    claims = json.loads(decode(claims_b64))
    assert claims["res"] == {"os:usecase": "attachments", "org": "1", "project": "42"}
    assert claims["exp"] == 1060
    SigningKey(seed).verify_key.verify(f"{header_b64}.{claims_b64}".encode(), decode(signature_b64))
    with pytest.raises(ObjectstoreTokenError):
        load_ed25519_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
    with pytest.raises(ObjectstoreTokenError):
        load_ed25519_pem("not base64 !!")


def test_chunk_attachment_with_stored_id() -> None:
    ref, chunks = chunk_attachment(
        b"x" * 5000, 1024, event_id=EVENT_ID, project_id=42, name="a.txt", stored_id="key1"
    )
    assert chunks == []
    assert ref.to_message_dict()["stored_id"] == "key1"
    assert "chunks" not in ref.to_message_dict()
    # Empty attachments are never stored.
    ref, chunks = chunk_attachment(b"", 1024, event_id=EVENT_ID, project_id=42, stored_id="k")
    assert ref.chunks == 0


# --- the client and the uploader against the development server ---------------------


@dataclass
class _Server:
    objectstore: ObjectstoreServer
    url: str

    @property
    def objects(self) -> dict[tuple[str, str, str], StoredObject]:
        return self.objectstore.storage.objects


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    objectstore = ObjectstoreServer()
    # Bodies are stored as sent (zstd): the server must not decode them.
    test_server = TestServer(objectstore.app(), port=0)
    await test_server.start_server(auto_decompress=False)
    try:
        yield _Server(objectstore, str(test_server.make_url("/")))
    finally:
        await test_server.close()


def _section(url: str, **extra: Any) -> ObjectstoreSection:
    return ObjectstoreSection(objectstore_url=url, retry_delay=0.0, **extra)


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


async def test_client_put_stores_compressed_with_metadata(server: _Server) -> None:
    client = ObjectstoreClient(_section(server.url))
    await client.start()
    try:
        key = await client.put(
            "attachments", 1, 42, b"hello" * 100,
            ObjectAttributes(content_type="text/plain", filename="a.txt", retention_days=30),
        )  # fmt: skip
    finally:
        await client.stop()
    stored = server.objects[("attachments", "org=1;project=42", key)]
    assert stored.meta.content_encoding == "zstd"
    assert stored.meta.content_type == "text/plain"
    assert stored.meta.filename == "a.txt"
    assert stored.meta.expiration == "ttl:30 days"


def test_client_sends_token_with_auth() -> None:
    auth = ObjectstoreAuth(key_id="k1", signing_key=_pem(bytes(32)))
    client = ObjectstoreClient(_section("http://objectstore/", auth=auth))
    headers = client._headers("attachments", 1, 42)
    assert headers["x-os-auth"].startswith("Bearer ")
    assert headers["x-os-auth"].count(".") == 2
    assert ObjectstoreClient(_section("http://objectstore/"))._headers("a", 1, 2) == {}


async def test_client_errors() -> None:
    client = ObjectstoreClient(_section(_closed_port_url(), max_attempts=3))
    await client.start()
    try:
        with pytest.raises(UploadError) as error:
            await client.put("attachments", 1, 42, b"x", ObjectAttributes())
        assert error.value.attempts == 3
        with pytest.raises(UploadError, match="invalid scoping"):
            await client.put("attachments", 0, 42, b"x", ObjectAttributes())
    finally:
        await client.stop()
    with pytest.raises(ValueError):
        ObjectstoreClient(ObjectstoreSection())


async def test_client_client_error_is_not_retried(server: _Server) -> None:
    client = ObjectstoreClient(_section(server.url, max_attempts=5))
    await client.start()
    try:
        with pytest.raises(UploadError) as error:
            # An invalid key is refused (400): retrying cannot help.
            await client.put("attachments", 1, 42, b"x", ObjectAttributes(key="../x"))
        assert error.value.attempts == 1
    finally:
        await client.stop()


def _uploader(
    url: str, global_config: dict[str, Any] | None, outcomes: _Outcomes, **extra: Any
) -> AttachmentUploader:
    uploader = AttachmentUploader.from_config(
        _section(url, **extra), cast(OutcomeSink, outcomes), lambda: global_config
    )
    assert uploader is not None
    return uploader


def _envelope() -> Envelope:
    return Envelope(
        headers={"event_id": EVENT_ID},
        items=[
            _attachment(
                b"log content", filename="log.txt", content_type="application/octet-stream"
            ),
            _attachment(b"", filename="empty.txt"),
            _attachment(
                b"MDMP",
                filename="minidump.dmp",
                attachment_type="event.minidump",
                content_type="application/x-dmp",
            ),
        ],
    )


async def test_uploader_stores_sampled_attachments(server: _Server) -> None:
    outcomes = _Outcomes()
    uploader = _uploader(server.url, ALL, outcomes)
    await uploader.start()
    envelope = _envelope()
    try:
        stored = await uploader.upload(envelope, _meta(), STATE, 90)
    finally:
        await uploader.stop()
    log_item, empty, minidump = envelope.items
    assert set(stored) == {id(log_item), id(minidump)}
    assert log_item.content_type == "text/plain"
    assert empty.content_type is None
    blob = server.objects[("attachments", "org=7;project=42", stored[id(minidump)])]
    assert blob.meta.content_type == "application/x-dmp"
    assert outcomes.dropped == []


async def test_uploader_not_sampled(server: _Server) -> None:
    configs: list[dict[str, Any] | None] = [None, {"options": {}}]
    for global_config in configs:
        uploader = _uploader(server.url, global_config, _Outcomes())
        await uploader.start()
        try:
            assert await uploader.upload(_envelope(), _meta(), STATE, 90) == {}
        finally:
            await uploader.stop()
    assert server.objects == {}


async def test_uploader_failure_falls_back_or_drops() -> None:
    outcomes = _Outcomes()
    uploader = _uploader(_closed_port_url(), ALL, outcomes, max_attempts=1)
    await uploader.start()
    envelope = _envelope()
    try:
        assert await uploader.upload(envelope, _meta(), STATE, 90) == {}
    finally:
        await uploader.stop()
    # Fallback to Kafka: everything stays, no outcome.
    assert len(envelope.items) == 3
    assert outcomes.dropped == []

    uploader = _uploader(_closed_port_url(), ALL, outcomes, max_attempts=1,
                         fallback_to_kafka=False)  # fmt: skip
    await uploader.start()
    try:
        assert await uploader.upload(envelope, _meta(), STATE, 90) == {}
    finally:
        await uploader.stop()
    assert [i.filename for i in envelope.items] == ["empty.txt"]
    assert sorted(outcomes.dropped) == [
        ("log.txt", "upload_failed", OutcomeCode.INVALID),
        ("minidump.dmp", "upload_failed", OutcomeCode.INVALID),
    ]


def test_processor_references_stored_attachments() -> None:
    config = config_from_dict({"processing": {"enabled": True}})
    topics = resolve_topics({})
    producer = KafkaProducer([("bootstrap.servers", "127.0.0.1:1")])
    processor = Processor(config, producer, topics, OutcomeSink(config, producer, topics))
    envelope = Envelope(
        headers={"event_id": EVENT_ID},
        items=[Item.new("event", b'{"message": "hi"}'), _attachment(b"abc", filename="a.txt")],
    )
    stored = {id(envelope.items[1]): "the-key"}
    plan = processor.build(envelope, _meta(), STATE, stored=stored)
    messages = plan.messages
    assert [m.topic for m in messages] == [KafkaTopic.ATTACHMENTS]
    event = msgpack.unpackb(messages[0].value)
    (attachment,) = event["attachments"]
    assert attachment["stored_id"] == "the-key"
    assert "chunks" not in attachment
