"""The development objectstore server (relay.dev.objectstore), driven by the official client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import urllib3
from aiohttp import web
from objectstore_client import Client, Session, Usecase
from objectstore_client.errors import RequestError
from objectstore_client.metadata import TimeToIdle, TimeToLive

from relay.dev.objectstore import (
    BadRequest,
    ObjectMeta,
    ObjectStorage,
    ObjectstoreServer,
    StoredObject,
    parse_duration,
    parse_expiration,
    parse_scope,
)


class _Running:
    def __init__(self, server: ObjectstoreServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(server.app(), auto_decompress=False)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _serve(server: ObjectstoreServer) -> Iterator[_Running]:
    running = _Running(server)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def objectstore() -> Iterator[_Running]:
    yield from _serve(ObjectstoreServer(max_object_size=1024 * 1024))


def _session(running: _Running, usecase: Usecase | None = None, project: int = 42) -> Session:
    return Client(running.url).session(usecase or Usecase("attachments"), org=1, project=project)


def test_put_get_roundtrip_compressed(objectstore: _Running) -> None:
    session = _session(objectstore)
    payload = b"heavens no" * 20_000
    key = session.put(payload, content_type="text/plain", filename="foo.txt")
    got = session.get(key)
    assert got.payload.read() == payload
    assert got.metadata.content_type == "text/plain"
    assert got.metadata.filename == "foo.txt"
    # The blob is kept as uploaded: zstd, decompressed by the client.
    raw = session.get(key, decompress=False)
    assert raw.metadata.compression == "zstd"
    assert raw.payload.read().startswith(b"\x28\xb5\x2f\xfd")


def test_put_with_key_uncompressed_and_custom_metadata(objectstore: _Running) -> None:
    session = _session(objectstore)
    key = session.put(b"raw", key="my/key.bin", compression="none", metadata={"foo": "bar"})
    assert key == "my/key.bin"
    got = session.get(key)
    assert got.payload.read() == b"raw"
    assert got.metadata.compression is None
    assert got.metadata.content_type == "application/octet-stream"
    assert got.metadata.custom == {"foo": "bar"}


def test_head_and_delete(objectstore: _Running) -> None:
    session = _session(objectstore)
    key = session.put(b"data", origin="10.0.0.1")
    meta = session.head(key)
    assert meta is not None
    assert meta.origin == "10.0.0.1"
    assert meta.time_created is not None
    session.delete(key)
    assert session.head(key) is None
    with pytest.raises(RequestError) as error:
        session.get(key)
    assert error.value.status == 404
    # Deleting again is not an error.
    session.delete(key)


def test_scopes_are_separate(objectstore: _Running) -> None:
    key = _session(objectstore, project=1).put(b"one", key="same")
    assert _session(objectstore, project=2).head(key) is None
    assert _session(objectstore, Usecase("other"), project=1).head(key) is None


def test_expiration_headers_roundtrip(objectstore: _Running) -> None:
    usecase = Usecase("attachments", expiration_policy=TimeToLive(timedelta(days=90)))
    session = _session(objectstore, usecase)
    key = session.put(b"x")
    meta = session.head(key)
    assert meta is not None
    assert meta.expiration_policy == TimeToLive(timedelta(days=90))
    assert meta.time_expires is not None and meta.time_created is not None
    assert meta.time_expires - meta.time_created == timedelta(days=90)


def test_too_large_and_bad_requests(objectstore: _Running) -> None:
    session = _session(objectstore)
    with pytest.raises(RequestError) as error:
        session.put(b"\x00" * (2 * 1024 * 1024), compression="none")
    assert error.value.status == 413
    http = urllib3.PoolManager()
    bad_scope = http.request("PUT", objectstore.url + "v1/objects/attachments/org/key", body=b"x")
    assert bad_scope.status == 400
    bad_encoding = http.request(
        "PUT",
        objectstore.url + "v1/objects/attachments/org=1/key",
        body=b"x",
        headers={"Content-Encoding": "br"},
    )
    assert bad_encoding.status == 400
    bad_expiry = http.request(
        "PUT",
        objectstore.url + "v1/objects/attachments/org=1/key",
        body=b"x",
        headers={"x-sn-expiration": "forever"},
    )
    assert bad_expiry.status == 400


def test_storage_expiry_and_tti() -> None:
    storage = ObjectStorage()
    ident = ("attachments", "org=1", "k")
    storage.put(ident, StoredObject(b"x", ObjectMeta(time_created=0.0, time_expires=10.0)))
    assert storage.get(ident, now=5.0) is not None
    assert storage.get(ident, now=10.0) is None
    assert ident not in storage.objects

    meta = ObjectMeta(expiration="tti:10s", time_created=0.0, time_expires=10.0)
    storage.put(ident, StoredObject(b"x", meta))
    obj = storage.get(ident, now=9.0)
    assert obj is not None
    storage.touch(obj, now=9.0)
    assert storage.get(ident, now=15.0) is not None


def test_storage_on_disk(tmp_path: Path) -> None:
    ident = ("attachments", "org=1;project=2", "a/b")
    ObjectStorage(tmp_path).put(ident, StoredObject(b"data", ObjectMeta(filename="f.txt")))
    reloaded = ObjectStorage(tmp_path)
    obj = reloaded.get(ident, now=0.0)
    assert obj is not None
    assert obj.data == b"data"
    assert obj.meta.filename == "f.txt"
    assert reloaded.delete(ident)
    assert ObjectStorage(tmp_path).objects == {}


def test_parsers() -> None:
    assert parse_duration("90 days") == 90 * 86400
    assert parse_duration("2160h") == 90 * 86400
    assert parse_duration("1d 2h 30m 5s") == 86400 + 7200 + 1800 + 5
    assert parse_duration("1 weeks") == 7 * 86400
    with pytest.raises(BadRequest):
        parse_duration("soon")
    with pytest.raises(BadRequest):
        parse_duration("5 parsecs")
    assert parse_expiration("") is None
    assert parse_expiration("manual") is None
    policy = parse_expiration("tti:1 days")
    assert policy is not None and (policy.kind, policy.seconds) == ("tti", 86400)
    with pytest.raises(BadRequest):
        parse_expiration("ttx:1d")
    assert parse_scope("org=1;project=42") == [("org", "1"), ("project", "42")]
    with pytest.raises(BadRequest):
        parse_scope("org")
    with pytest.raises(BadRequest):
        parse_scope("org=a b")


def test_tti_policy_is_reported(objectstore: _Running) -> None:
    usecase = Usecase("attachments", expiration_policy=TimeToIdle(timedelta(hours=1)))
    session = _session(objectstore, usecase)
    key = session.put(b"x")
    meta = session.head(key)
    assert meta is not None
    assert meta.expiration_policy == TimeToIdle(timedelta(hours=1))
