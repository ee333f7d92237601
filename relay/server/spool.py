"""The disk spool of a POP relay: envelopes the upstream could not take (yet), and
envelopes waiting for their project config (relay.server.pending), in one file.

Storage choice: **SQLite in WAL mode** (``synchronous=NORMAL``, or ``FULL`` for
``fsync`` on every write when asked), one file at ``spool.envelopes.path``.

- Why SQLite and not our own segment files: atomic multi-row deletes after a replay,
  crash safety (a torn write is rolled back by the WAL, never half-visible), ordered
  reads by an ``INTEGER PRIMARY KEY`` and free-space reuse come for free; a POP spools
  at the rate of its upstream's outage, far below SQLite's write throughput. Relay
  itself uses SQLite/WAL for its envelope buffer.
- Integrity beyond SQLite's: every row carries a CRC32 of its data, checked on read. A
  row that does not match (bit rot, a hand edit) is moved to the ``quarantine`` table
  and counted (:attr:`Spool.quarantined`), never sent and never retried.
- A file that is not a database at all, or that SQLite reports as malformed, is renamed
  to ``<path>.corrupt-<unix time>`` (kept for an operator) and a fresh spool is started:
  a corrupt spool is counted and logged, never a crash loop.
- Size: bodies are stored zstd-compressed. The cap ``max_disk_size`` is Relay's: the
  database pages in use (page count less free pages, times the page size), which covers
  both queues, their indexes and the schema, so a fresh file already uses a few pages. A
  push that would go over the cap raises :class:`SpoolFull`; the caller turns the
  envelope into an ``internal`` outcome and logs it.

All SQLite calls run in one worker thread at a time (``asyncio.to_thread`` behind a
lock), so the event loop never blocks on disk. The module also holds the offline
``relay spool inspect|drain`` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from relay.config import Config
from relay.protocol.encoding import zstd_compress, zstd_decompress
from relay.protocol.keys import Credentials

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Decompression limit for a spooled body (bodies are at most ``limits.max_envelope_size``).
_MAX_BODY = 2**31

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    project_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_age ON envelopes (received_at, id);
CREATE TABLE IF NOT EXISTS waiting (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    wait_key TEXT NOT NULL,
    meta BLOB NOT NULL,
    body BLOB NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS waiting_by_key ON waiting (wait_key, id);
"""
#: Created with the first corrupt row. A fresh file has Relay's footprint (six pages: the
#: schema, ``envelopes``, its index, ``sqlite_sequence``, ``waiting``, its index), so that a
#: ``max_disk_size`` written for Relay fits the same number of envelopes.
_QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    quarantined_at REAL NOT NULL,
    reason TEXT NOT NULL,
    project_id INTEGER,
    public_key TEXT,
    headers BLOB,
    body BLOB
);
"""


class SpoolFull(Exception):
    """The spool is at ``max_disk_size``."""


class SpoolError(Exception):
    """The spool cannot be used (disk error); the caller treats the envelope as lost."""


@dataclass(frozen=True, slots=True)
class SpooledEnvelope:
    """One envelope as stored: what is needed to send it upstream again."""

    id: int
    received_at: float
    project_id: int
    public_key: str
    #: Forwarding headers (``X-Sentry-Auth``, ``X-Forwarded-For``, ...).
    headers: dict[str, str]
    #: The serialized envelope (uncompressed).
    body: bytes


def _checksum(project_id: int, public_key: str, headers: bytes, body: bytes) -> int:
    crc = zlib.crc32(f"{project_id}:{public_key}:".encode())
    crc = zlib.crc32(headers, crc)
    return zlib.crc32(body, crc)


_headers_decoder = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class WaitingEnvelope:
    """An envelope that waits for a project config, as stored (relay.server.pending)."""

    #: Wall-clock time (``time.time()``) it was queued.
    queued_at: float
    #: The public key whose project config it waits for.
    key: str
    #: The request's metadata, serialized by the caller.
    meta: bytes
    #: The serialized envelope (uncompressed).
    body: bytes


#: Relay's measure of a spool's size: the pages in use, not the file (free pages are reused).
_USAGE_SQL = (
    "SELECT (page_count - freelist_count) * page_size"
    " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
)
_SIZES_SQL = f"SELECT (SELECT MIN(received_at) FROM envelopes), ({_USAGE_SQL})"
#: A write's effect on the row counts: (envelopes for the upstream, envelopes waiting).
Delta = tuple[int, int]


class Spool:
    """An ordered, size-capped envelope store on disk. Open with :meth:`open`.

    Two queues share the file and its cap: envelopes for the upstream (:meth:`push`,
    :meth:`peek`, :meth:`remove`) and envelopes waiting for a project config
    (:meth:`push_waiting`, :meth:`take_waiting`, :meth:`expire_waiting`).
    """

    def __init__(self, path: Path, max_bytes: int, *, fsync: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        #: Rows quarantined (bad checksum) plus whole files set aside, since open.
        self.quarantined = 0
        #: Envelopes refused because the spool was full, since open.
        self.refused = 0
        #: Envelopes for the upstream.
        self.count = 0
        #: Envelopes waiting for a project config.
        self.waiting = 0
        #: Bytes in use (see the module docstring), as of the last write or delete.
        self.bytes = 0
        #: Size of the last envelope refused for want of room (0: the last push fit).
        self._refused_size = 0
        self._oldest: float | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the spool; a corrupt file is set aside, never fatal."""
        await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            self._set_aside(str(exc))
            self._connect()

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            conn.executescript(_SCHEMA)
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM envelopes), (SELECT COUNT(*) FROM waiting)"
            ).fetchone()
            sizes = self._sizes(conn)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self._conn = conn
        self.count, self.waiting = int(row[0]), int(row[1])
        self._oldest, self.bytes = sizes
        if self.count or self.waiting:
            log.info(
                "spool %s holds %d envelopes for the upstream and %d waiting for their "
                "project config (%d bytes)", self.path, self.count, self.waiting, self.bytes,
            )  # fmt: skip

    @staticmethod
    def _sizes(conn: sqlite3.Connection) -> tuple[float | None, int]:
        # Both are cheap (an index edge, the file header): no COUNT(*) of a long backlog.
        oldest, used = conn.execute(_SIZES_SQL).fetchone()
        return oldest, int(used)

    def _set_aside(self, reason: str) -> None:
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error(
            "spool %s is corrupt (%s): moved to %s, starting empty", self.path, reason, target
        )
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(Path(f"{target}{suffix}"))
        self.quarantined += 1

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.to_thread(conn.close)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise SpoolError("spool is closed")
            try:
                return await asyncio.to_thread(fn, conn)
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: {exc}") from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], tuple[T, Delta]]) -> T:
        """Run ``fn`` in one transaction; apply the row counts it changed and refresh the
        bytes in use."""

        def in_transaction(
            conn: sqlite3.Connection,
        ) -> tuple[T, Delta, tuple[float | None, int]]:
            conn.execute("BEGIN")
            try:
                result, delta = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result, delta, self._sizes(conn)

        result, (envelopes, waiting), (self._oldest, self.bytes) = await self._run(in_transaction)
        self.count += envelopes
        self.waiting += waiting
        return result

    def _admit(self, size: int) -> None:
        """Raise :class:`SpoolFull` unless ``size`` more bytes fit under the cap."""
        if self.bytes + size > self.max_bytes:
            self.refused += 1
            self._refused_size = size
            raise SpoolFull(f"spool is full ({self.bytes} of {self.max_bytes} bytes)")
        self._refused_size = 0

    # --- state for metrics and health -----------------------------------------------

    def __len__(self) -> int:
        return self.count

    @property
    def oldest_received_at(self) -> float | None:
        """Wall-clock time (``time.time()``) the oldest spooled envelope was received."""
        return self._oldest if self.count else None

    @property
    def full(self) -> bool:
        """Whether the spool cannot take more: at its cap, or without room for the last
        envelope it refused (until rows are removed or a smaller one fits)."""
        return self.bytes >= self.max_bytes or (
            self._refused_size > 0 and self.bytes + self._refused_size > self.max_bytes
        )

    # --- the upstream queue ----------------------------------------------------------

    async def push(
        self,
        project_id: int,
        public_key: str,
        headers: dict[str, str],
        body: bytes,
        received_at: float | None = None,
    ) -> int:
        """Store an envelope at the tail; raise :class:`SpoolFull` over the cap."""
        encoded_headers = msgspec.json.encode(headers)
        stored = zstd_compress(body)
        self._admit(len(stored) + len(encoded_headers))
        when = time.time() if received_at is None else received_at
        checksum = _checksum(project_id, public_key, encoded_headers, stored)

        def insert(conn: sqlite3.Connection) -> tuple[int, Delta]:
            cursor = conn.execute(
                "INSERT INTO envelopes (received_at, project_id, public_key, headers, body,"
                " checksum) VALUES (?, ?, ?, ?, ?, ?)",
                (when, project_id, public_key, encoded_headers, stored, checksum),
            )
            return int(cursor.lastrowid or 0), (1, 0)

        return await self._write(insert)

    async def peek(self, limit: int) -> list[SpooledEnvelope]:
        """The ``limit`` envelopes received first (by the time the client's request arrived,
        not the time they were spooled). Corrupt rows are quarantined on the way."""

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[tuple[list[SpooledEnvelope], list[tuple[int, str]]], Delta]:
            rows = conn.execute(
                "SELECT id, received_at, project_id, public_key, headers, body, checksum"
                " FROM envelopes ORDER BY received_at, id LIMIT ?",
                (limit,),
            ).fetchall()
            good: list[SpooledEnvelope] = []
            bad: list[tuple[int, str]] = []
            for rid, when, pid, key, hdrs, body, checksum in rows:
                try:
                    if _checksum(int(pid), str(key), bytes(hdrs), bytes(body)) != checksum:
                        raise ValueError("checksum mismatch")
                    good.append(SpooledEnvelope(
                        rid, float(when), int(pid), str(key), _headers_decoder.decode(hdrs),
                        zstd_decompress(bytes(body), _MAX_BODY),
                    ))  # fmt: skip
                except Exception as exc:  # any decoding failure means corruption
                    bad.append((rid, f"{type(exc).__name__}: {exc}"))
            if bad:
                conn.execute(_QUARANTINE_SCHEMA)
            for rid, reason in bad:
                conn.execute(
                    "INSERT OR REPLACE INTO quarantine (id, quarantined_at, reason, project_id,"
                    " public_key, headers, body) SELECT id, ?, ?, project_id, public_key,"
                    " headers, body FROM envelopes WHERE id = ?",
                    (time.time(), reason, rid),
                )
                conn.execute("DELETE FROM envelopes WHERE id = ?", (rid,))
            return (good, bad), (-len(bad), 0)

        good, bad = await self._write(read)
        self._quarantined(bad)
        return good

    def _quarantined(self, bad: list[tuple[int, str]]) -> None:
        for rid, reason in bad:
            log.error("spool: quarantined corrupt envelope %d: %s", rid, reason)
            self.quarantined += 1

    async def remove(self, entries: list[SpooledEnvelope]) -> None:
        """Delete sent (or otherwise finished) envelopes."""
        if not entries:
            return
        ids = [(e.id,) for e in entries]

        def delete(conn: sqlite3.Connection) -> tuple[None, Delta]:
            deleted = conn.executemany("DELETE FROM envelopes WHERE id = ?", ids).rowcount
            return None, (-deleted, 0)

        await self._write(delete)

    async def quarantine_count(self) -> int:
        """Rows in the quarantine table (all time, not only since open)."""

        def count(conn: sqlite3.Connection) -> int:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'"
            ).fetchone()
            return (
                int(conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]) if exists else 0
            )

        return await self._run(count)

    # --- envelopes waiting for a project config --------------------------------------

    async def push_waiting(self, entries: list[WaitingEnvelope]) -> None:
        """Store envelopes that wait for a project config, all or none (:class:`SpoolFull`)."""
        rows = []
        for entry in entries:
            stored = zstd_compress(entry.body)
            checksum = _checksum(0, entry.key, entry.meta, stored)
            rows.append((entry.queued_at, entry.key, entry.meta, stored, checksum))
        self._admit(sum(len(row[2]) + len(row[3]) for row in rows))

        def insert(conn: sqlite3.Connection) -> tuple[None, Delta]:
            conn.executemany(
                "INSERT INTO waiting (received_at, wait_key, meta, body, checksum)"
                " VALUES (?, ?, ?, ?, ?)", rows,
            )  # fmt: skip
            return None, (0, len(rows))

        await self._write(insert)

    async def waiting_keys(self) -> dict[str, int]:
        """How many envelopes wait on disk, per public key."""

        def count(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT wait_key, COUNT(*) FROM waiting GROUP BY wait_key")
            return {str(key): int(n) for key, n in rows}

        return await self._run(count)

    async def take_waiting(self, key: str) -> list[WaitingEnvelope]:
        """Remove and return, oldest first, the envelopes that wait for ``key``."""
        return await self._take_waiting("wait_key = ?", (key,))

    async def expire_waiting(self, queued_before: float) -> list[WaitingEnvelope]:
        """Remove and return the waiting envelopes queued before ``queued_before``
        (wall-clock)."""
        return await self._take_waiting("received_at < ?", (queued_before,))

    async def _take_waiting(
        self, where: str, args: tuple[str | float, ...]
    ) -> list[WaitingEnvelope]:
        def take(
            conn: sqlite3.Connection,
        ) -> tuple[tuple[list[WaitingEnvelope], list[tuple[int, str]]], Delta]:
            rows = conn.execute(
                "SELECT id, received_at, wait_key, meta, body, checksum FROM waiting"
                f" WHERE {where} ORDER BY id", args,
            ).fetchall()  # fmt: skip
            good: list[WaitingEnvelope] = []
            bad: list[tuple[int, str]] = []
            for rid, when, key, meta, body, checksum in rows:
                try:
                    if _checksum(0, str(key), bytes(meta), bytes(body)) != checksum:
                        raise ValueError("checksum mismatch")
                    good.append(WaitingEnvelope(
                        float(when), str(key), bytes(meta), zstd_decompress(bytes(body), _MAX_BODY)
                    ))  # fmt: skip
                except Exception as exc:  # any decoding failure means corruption
                    bad.append((rid, f"{type(exc).__name__}: {exc}"))
                    conn.execute(_QUARANTINE_SCHEMA)
                    # Negative ids, each new: the positive ones are those of `envelopes`.
                    conn.execute(
                        "INSERT INTO quarantine (id, quarantined_at, reason, public_key,"
                        " headers, body) SELECT MIN(0, COALESCE(MIN(id), 0)) - 1, ?, ?, ?, ?, ?"
                        " FROM quarantine",
                        (time.time(), f"waiting row {rid}: {bad[-1][1]}", key, meta, body),
                    )
            conn.executemany("DELETE FROM waiting WHERE id = ?", [(row[0],) for row in rows])
            return (good, bad), (0, -len(rows))

        good, bad = await self._write(take)
        self._quarantined(bad)
        return good


# --- offline commands (``relay spool inspect|drain``) ------------------------------------


async def inspect_spool(path: Path, limit: int = 10) -> dict[str, object]:
    """A summary of a spool file: counts, bytes, age, first envelopes."""
    spool = Spool(path, max_bytes=2**62)
    await spool.open()
    try:
        head = await spool.peek(limit)
        oldest = spool.oldest_received_at
        return {
            "path": str(path),
            "envelopes": spool.count,
            "waiting_for_project_config": spool.waiting,
            "bytes": spool.bytes,
            "oldest_age_secs": None if oldest is None else round(time.time() - oldest, 1),
            "quarantined": await spool.quarantine_count(),
            "head": [
                {
                    "id": e.id,
                    "project_id": e.project_id,
                    "public_key": e.public_key,
                    "received_at": e.received_at,
                    "size": len(e.body),
                }
                for e in head
            ],
        }
    finally:
        await spool.close()


# --- the service: spool on upstream failure, replay when it recovers ---------------------

#: Result of one replay attempt: True when the envelope is finished (sent, or refused by
#: the upstream for good), False when the upstream is unavailable (try again later).
Send = Callable[[SpooledEnvelope], Awaitable[bool]]

#: Envelopes read from disk per replay round.
REPLAY_BATCH = 32
#: Concurrent sends while replaying. 1 keeps the replay strictly in order (the upstream
#: sees spooled envelopes in the order they were received), at one round trip per
#: envelope. New traffic has its own ``limits.max_concurrent_requests`` slots, so a
#: backlog never starves it.
REPLAY_CONCURRENCY = 1
#: Backoff between probes of an unavailable upstream.
PROBE_MIN_SECS = 0.2
PROBE_MAX_SECS = 5.0


class SpoolService:
    """Owns the :class:`Spool` of a POP relay and replays it in the background.

    The forwarder calls :meth:`put` for envelopes the upstream did not take within the
    retry budget, :meth:`mark_up`/:meth:`mark_down` with what it learns about the upstream.
    While the upstream is marked down (:attr:`upstream_down`), the forwarder spools new
    envelopes at once instead of holding them in memory; the replay loop probes the
    upstream with the oldest envelope (backoff up to ``PROBE_MAX_SECS``) and, once it is
    up, replays in order (``REPLAY_CONCURRENCY`` at a time), at most
    ``max_unspool_envelopes_per_second``.
    """

    def __init__(
        self, spool: Spool, send: Send | None = None, rate_per_sec: int | None = None
    ) -> None:
        self.spool = spool
        self.send = send
        self.rate_per_sec = rate_per_sec
        self.upstream_down = False
        self.replayed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._paused = False

    async def start(self) -> None:
        await self.spool.open()
        self._task = asyncio.create_task(self._replay_loop(), name="spool-replay")
        if len(self.spool):
            self._wake.set()

    async def stop(self) -> None:
        """Stop replaying (envelopes stay on disk) and close the file."""
        self._paused = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.spool.close()

    def pause(self) -> None:
        """Stop starting new replays (shutdown): the backlog stays for the next start."""
        self._paused = True

    async def put(self, project_id: int, public_key: str, headers: dict[str, str],
                  body: bytes, received_at: float | None = None) -> None:  # fmt: skip
        """Spool an envelope; raises :class:`SpoolFull` or :class:`SpoolError`."""
        await self.spool.push(project_id, public_key, headers, body, received_at)
        self._wake.set()

    def mark_up(self) -> None:
        if self.upstream_down:
            log.info("upstream is back: replaying %d spooled envelopes", len(self.spool))
        self.upstream_down = False
        if len(self.spool):
            self._wake.set()

    def mark_down(self) -> None:
        if not self.upstream_down:
            log.warning("upstream unavailable: spooling envelopes to %s", self.spool.path)
        self.upstream_down = True
        self._wake.set()

    async def _replay_loop(self) -> None:
        backoff = PROBE_MIN_SECS
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self.spool) and not self._paused and self.send is not None:
                try:
                    ok = await self._replay_round()
                except SpoolError as exc:
                    log.error("spool replay failed: %s", exc)
                    ok = False
                if ok:
                    backoff = PROBE_MIN_SECS
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, PROBE_MAX_SECS)

    async def _replay_round(self) -> bool:
        """Replay one batch, oldest first; False when the upstream failed (stop for now)."""
        assert self.send is not None
        send = self.send
        if self.upstream_down:
            # Probe with the single oldest envelope before sending a batch.
            head = await self.spool.peek(1)
            if not head:
                return True
            if not await send(head[0]):
                return False
            await self.spool.remove(head)
            self.replayed += 1
            self.mark_up()
        batch = await self.spool.peek(REPLAY_BATCH)
        index = 0
        while index < len(batch) and not self._paused:
            chunk = batch[index : index + REPLAY_CONCURRENCY]
            started = time.monotonic()
            results = await asyncio.gather(*(send(entry) for entry in chunk))
            done = [entry for entry, ok in zip(chunk, results, strict=True) if ok]
            await self.spool.remove(done)
            self.replayed += len(done)
            if len(done) < len(chunk):
                self.mark_down()
                return False
            index += len(chunk)
            if self.rate_per_sec:
                pause = len(chunk) / self.rate_per_sec - (time.monotonic() - started)
                if pause > 0:
                    await asyncio.sleep(pause)
            else:
                await asyncio.sleep(0)  # let new traffic in between chunks
        return True

    async def drain_all(self, deadline: float) -> int:
        """Replay everything now (``relay spool drain``); return how many were sent."""
        sent = 0
        assert self.send is not None
        while len(self.spool) and time.monotonic() < deadline:
            batch = await self.spool.peek(REPLAY_BATCH)
            if not batch:
                break
            for entry in batch:
                if not await self.send(entry):
                    return sent
                await self.spool.remove([entry])
                sent += 1
        return sent


async def drain_spool(
    config: Config, credentials: Credentials | None, timeout: float
) -> tuple[int, int]:
    """``relay spool drain``: send every spooled envelope upstream now, in order.

    Meant for a stopped relay (a running one replays by itself). Returns how many were sent
    and how many are left; stops at the first envelope the upstream cannot take.
    """
    from relay.server.forwarder import Forwarder
    from relay.server.outcomes import OutcomeSink
    from relay.server.upstream import UpstreamClient

    path = config.spool.envelopes.path
    if not path:
        raise SpoolError("spool.envelopes.path is not set")
    upstream = UpstreamClient(config, credentials)
    forwarder = Forwarder(config, upstream, OutcomeSink(config, mode="none"), 0)
    service = SpoolService(Spool(Path(path), config.spool.envelopes.max_disk_size),
                           forwarder.replay)  # fmt: skip
    await upstream.start()
    await service.spool.open()
    try:
        sent = await service.drain_all(time.monotonic() + timeout)
        return sent, len(service.spool)
    finally:
        await service.spool.close()
        await upstream.stop()
