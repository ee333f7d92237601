"""A minimal objectstore-compatible server for development and tests.

Sentry's objectstore keeps blobs (attachments, minidumps, raw profiles) that processing
relays upload instead of chunking them into Kafka. Nothing on PyPI provides the server, so
this one speaks the subset of its HTTP API that Relay and the official clients
(``objectstore-client``) use::

    PUT    /v1/objects/{usecase}/{scope}/{key}   store under a chosen key   -> {"key": ...}
    POST   /v1/objects/{usecase}/{scope}/        store under a new key      -> {"key": ...}
    GET    /v1/objects/{usecase}/{scope}/{key}   the blob, as stored, with its metadata
    HEAD   /v1/objects/{usecase}/{scope}/{key}   only the metadata (404 if absent)
    DELETE /v1/objects/{usecase}/{scope}/{key}   remove it (idempotent)

``scope`` is ``key=value`` pairs joined by ``;`` (``org=1;project=42``). Blobs are kept
exactly as uploaded: a ``Content-Encoding: zstd`` body stays compressed and is served with
that header, and the client decompresses it (as the real service does). Metadata travels in
headers: ``Content-Type``, ``x-sn-expiration`` (``ttl:…``/``tti:…``), ``x-sn-origin``,
``x-sn-filename`` and custom ``x-snme-*`` pairs; the server adds ``x-sn-time-created`` and
``x-sn-time-expires``. Expired objects are gone. Authentication (``x-os-auth``) is not
checked: this server is for local use only.

Run it with ``python -m relay.dev.objectstore --port 8888`` (``--data-dir`` keeps the blobs
on disk across restarts).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
from aiohttp import web

log = logging.getLogger(__name__)

HEADER_EXPIRATION: Final = "x-sn-expiration"
HEADER_TIME_CREATED: Final = "x-sn-time-created"
HEADER_TIME_EXPIRES: Final = "x-sn-time-expires"
HEADER_ORIGIN: Final = "x-sn-origin"
HEADER_FILENAME: Final = "x-sn-filename"
HEADER_META_PREFIX: Final = "x-snme-"

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
#: Largest object accepted by default (the whole body is held in memory).
DEFAULT_MAX_OBJECT_SIZE: Final = 256 * 1024 * 1024

#: Characters objectstore allows in usecases, scope keys and values.
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_\-()$!+*']+$")
#: Keys may also contain dots and slashes (they are paths in the backing store).
_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_\-()$!+*'.=/:@,~]+$")
_DURATION_PART: Final = re.compile(r"(\d+)\s*([a-zA-Z]+)")
#: Unit prefixes in matching order ("ms" and "mo" before "m"), as humantime writes them.
_UNIT_SECONDS: Final = (
    ("ms", 0.001), ("mo", 30.44 * 86400), ("y", 365.25 * 86400), ("w", 7 * 86400),
    ("d", 86400), ("h", 3600), ("m", 60), ("s", 1),
)  # fmt: skip


class BadRequest(Exception):
    """A request the server refuses with 400 and this message."""


@dataclass(frozen=True, slots=True)
class Expiration:
    """An expiration policy: time to live (from creation) or to idle (from last access)."""

    kind: str  # "ttl" or "tti"
    seconds: float
    raw: str


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90 days``, ``2160h`` or ``1d 2h 30m``."""
    parts = _DURATION_PART.findall(text)
    rest = _DURATION_PART.sub("", text).strip()
    if not parts or rest:
        raise BadRequest(f"invalid duration {text!r}")
    total = 0.0
    for number, unit in parts:
        unit = unit.lower()
        for prefix, factor in _UNIT_SECONDS:
            if unit.startswith(prefix):
                total += int(number) * factor
                break
        else:
            raise BadRequest(f"invalid duration unit {unit!r}")
    return total


def parse_expiration(value: str) -> Expiration | None:
    """The policy of an ``x-sn-expiration`` header; ``manual`` (or empty) means none."""
    value = value.strip()
    if not value or value == "manual":
        return None
    kind, sep, duration = value.partition(":")
    if not sep or kind not in ("ttl", "tti"):
        raise BadRequest(f"invalid expiration policy {value!r}")
    return Expiration(kind, parse_duration(duration), value)


def parse_scope(scope: str) -> list[tuple[str, str]]:
    """The ``key=value`` pairs of a scope path segment; raises on malformed scopes."""
    if scope in ("", "_"):
        return []
    pairs: list[tuple[str, str]] = []
    for part in scope.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not _NAME_RE.match(key) or not _NAME_RE.match(value):
            raise BadRequest(f"invalid scope {scope!r}")
        pairs.append((key, value))
    return pairs


class ObjectMeta(msgspec.Struct):
    """What is known about a stored object besides its bytes."""

    content_type: str = DEFAULT_CONTENT_TYPE
    content_encoding: str | None = None
    expiration: str | None = None
    origin: str | None = None
    filename: str | None = None
    custom: dict[str, str] = msgspec.field(default_factory=dict)
    time_created: float = 0.0
    #: Unix time after which the object is gone; ``None`` keeps it until deleted.
    time_expires: float | None = None


@dataclass
class StoredObject:
    """One blob and its metadata."""

    data: bytes
    meta: ObjectMeta


@dataclass
class ObjectStorage:
    """Blobs by ``(usecase, scope, key)``, in memory and optionally mirrored to a directory."""

    data_dir: Path | None = None
    objects: dict[tuple[str, str, str], StoredObject] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._load()

    def _file(self, ident: tuple[str, str, str]) -> Path:
        assert self.data_dir is not None
        digest = hashlib.sha256("\0".join(ident).encode()).hexdigest()
        return self.data_dir / digest

    def _load(self) -> None:
        assert self.data_dir is not None
        for meta_path in self.data_dir.glob("*.json"):
            try:
                record = json.loads(meta_path.read_text())
                ident = (record["usecase"], record["scope"], record["key"])
                meta = msgspec.convert(record["meta"], ObjectMeta)
                data = meta_path.with_suffix("").read_bytes()
            except (OSError, ValueError, KeyError, msgspec.ValidationError) as error:
                log.warning("skipping unreadable object %s: %s", meta_path, error)
                continue
            self.objects[ident] = StoredObject(data, meta)

    def put(self, ident: tuple[str, str, str], obj: StoredObject) -> None:
        """Store (or replace) an object."""
        self.objects[ident] = obj
        if self.data_dir is not None:
            path = self._file(ident)
            path.write_bytes(obj.data)
            record = {
                "usecase": ident[0], "scope": ident[1], "key": ident[2],
                "meta": msgspec.to_builtins(obj.meta),
            }  # fmt: skip
            path.with_suffix(".json").write_text(json.dumps(record))

    def get(self, ident: tuple[str, str, str], now: float) -> StoredObject | None:
        """The object if it exists and has not expired; an access renews a TTI policy."""
        obj = self.objects.get(ident)
        if obj is None:
            return None
        if obj.meta.time_expires is not None and obj.meta.time_expires <= now:
            self.delete(ident)
            return None
        return obj

    def touch(self, obj: StoredObject, now: float) -> None:
        """Bump a time-to-idle expiration after an access."""
        if obj.meta.expiration is None:
            return
        policy = parse_expiration(obj.meta.expiration)
        if policy is not None and policy.kind == "tti":
            obj.meta.time_expires = now + policy.seconds

    def delete(self, ident: tuple[str, str, str]) -> bool:
        """Remove an object; ``False`` if there was none."""
        found = self.objects.pop(ident, None) is not None
        if self.data_dir is not None:
            path = self._file(ident)
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
        return found


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _meta_headers(meta: ObjectMeta) -> dict[str, str]:
    # Lower-case names, as objectstore (HTTP/1.1 via hyper) sends them: the Python client
    # compares header names case-sensitively.
    headers = {"content-type": meta.content_type, HEADER_TIME_CREATED: _iso(meta.time_created)}
    if meta.content_encoding:
        headers["content-encoding"] = meta.content_encoding
    if meta.expiration:
        headers[HEADER_EXPIRATION] = meta.expiration
    if meta.time_expires is not None:
        headers[HEADER_TIME_EXPIRES] = _iso(meta.time_expires)
    if meta.origin:
        headers[HEADER_ORIGIN] = meta.origin
    if meta.filename is not None:
        headers[HEADER_FILENAME] = meta.filename
        # Downloads are saved under the file name (quotes escaped, as a quoted-string).
        quoted = meta.filename.replace("\\", "\\\\").replace('"', '\\"')
        headers["content-disposition"] = f'attachment; filename="{quoted}"'
    for name, value in meta.custom.items():
        headers[f"{HEADER_META_PREFIX}{name}"] = value
    return headers


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ObjectstoreServer:
    """The aiohttp application around an :class:`ObjectStorage`."""

    def __init__(
        self, storage: ObjectStorage | None = None, max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    ) -> None:
        self.storage = storage or ObjectStorage()
        self.max_object_size = max_object_size

    def app(self) -> web.Application:
        """The web application."""
        app = web.Application(client_max_size=self.max_object_size)
        base = "/v1/objects/{usecase}/{scope}/"
        app.router.add_post(base, self.handle_write)
        app.router.add_put(base + "{key:.+}", self.handle_write)
        app.router.add_post(base + "{key:.+}", self.handle_write)
        # allow_head: HEAD is served by the same handler, without the body.
        app.router.add_get(base + "{key:.+}", self.handle_read, allow_head=True)
        app.router.add_delete(base + "{key:.+}", self.handle_delete)
        app.router.add_get("/health", self.handle_health)
        return app

    @staticmethod
    def _ident(request: web.Request, key: str | None = None) -> tuple[str, str, str]:
        usecase = request.match_info["usecase"]
        scope = request.match_info["scope"]
        if not _NAME_RE.match(usecase):
            raise BadRequest(f"invalid usecase {usecase!r}")
        parse_scope(scope)
        key = key if key is not None else request.match_info.get("key", "")
        if not key or not _KEY_RE.match(key) or ".." in key.split("/"):
            raise BadRequest(f"invalid key {key!r}")
        return usecase, scope, key

    async def handle_health(self, request: web.Request) -> web.Response:
        """Liveness probe."""
        return web.Response(text="ok")

    async def handle_write(self, request: web.Request) -> web.Response:
        """Store the body under the key in the path, or under a fresh key (POST without key)."""
        key = request.match_info.get("key") or uuid.uuid4().hex
        try:
            ident = self._ident(request, key)
            meta = self._meta_from_request(request)
        except BadRequest as error:
            return _error(400, str(error))
        declared = request.content_length
        if declared is not None and declared > self.max_object_size:
            return _error(413, "object too large")
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self.max_object_size:
                return _error(413, "object too large")
        self.storage.put(ident, StoredObject(bytes(body), meta))
        log.debug("stored %s (%d bytes)", "/".join(ident), len(body))
        return web.json_response({"key": key})

    @staticmethod
    def _meta_from_request(request: web.Request) -> ObjectMeta:
        now = time.time()
        headers = request.headers
        meta = ObjectMeta(
            content_type=headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
            content_encoding=(headers.get("Content-Encoding") or "").strip().lower() or None,
            origin=headers.get(HEADER_ORIGIN),
            filename=headers.get(HEADER_FILENAME),
            time_created=now,
        )
        if meta.content_encoding not in (None, "identity", "zstd"):
            raise BadRequest(f"unsupported content encoding {meta.content_encoding!r}")
        if meta.content_encoding == "identity":
            meta.content_encoding = None
        policy = parse_expiration(headers.get(HEADER_EXPIRATION, ""))
        if policy is not None:
            meta.expiration = policy.raw
            meta.time_expires = now + policy.seconds
        for name, value in headers.items():
            lower = name.lower()
            if lower.startswith(HEADER_META_PREFIX):
                meta.custom[lower[len(HEADER_META_PREFIX) :]] = value
        return meta

    async def handle_read(self, request: web.Request) -> web.Response:
        """GET (body and metadata) and HEAD (metadata only) of one object."""
        try:
            ident = self._ident(request)
        except BadRequest as error:
            return _error(400, str(error))
        now = time.time()
        obj = self.storage.get(ident, now)
        if obj is None:
            return _error(404, "object not found")
        headers = _meta_headers(obj.meta)
        self.storage.touch(obj, now)
        if request.method == "HEAD":
            headers["content-length"] = str(len(obj.data))
            return web.Response(status=200, headers=headers)
        return web.Response(body=obj.data, headers=headers)

    async def handle_delete(self, request: web.Request) -> web.Response:
        """Delete one object; deleting a missing object succeeds too."""
        try:
            ident = self._ident(request)
        except BadRequest as error:
            return _error(400, str(error))
        self.storage.delete(ident)
        return web.Response(status=204)


async def serve(host: str, port: int, server: ObjectstoreServer) -> None:
    """Run until SIGINT/SIGTERM."""
    runner = web.AppRunner(server.app(), access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("objectstore listening on http://%s:%d/", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep blobs on disk")
    parser.add_argument("--max-object-size", type=int, default=DEFAULT_MAX_OBJECT_SIZE)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(message)s")
    storage = ObjectStorage(args.data_dir)
    asyncio.run(serve(args.host, args.port, ObjectstoreServer(storage, args.max_object_size)))


if __name__ == "__main__":
    main()
