"""Keeps this relay's kill-switches in sync with Redis and applies them at admission.

The hash (``killswitches.redis_key``) is read every ``killswitches.poll_interval`` seconds
(one ``HGETALL``); rules are recompiled only when their text changes. While Redis is
unreachable the last switches stay in force (fail static) and one warning is logged per
outage. A broken rule in the hash (a hand edit: the CLI refuses them) is skipped with an
error log; the other switches still apply.

:meth:`KillSwitchService.apply` is called by the ingestor for every envelope, once its
project is known and before rate limits, processing or forwarding. Every dropped item is
a ``filtered`` outcome with reason ``killswitch:NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from relay.config import Config
from relay.kafka.outcomes import OutcomeCode
from relay.killswitch import KillSwitches, Scope, load_texts
from relay.protocol.envelope import Envelope
from relay.protocol.project_config import ProjectState
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

log = logging.getLogger(__name__)


def killswitch_redis_url(config: Config) -> str | None:
    """``killswitches.redis``, else ``processing.redis``; None when neither is set."""
    return config.killswitches.redis or config.processing.redis_url


class KillSwitchService:
    """The current switches of this relay, refreshed from Redis in the background."""

    def __init__(
        self, config: Config, outcomes: OutcomeSink, redis: Redis | RedisCluster | None = None
    ) -> None:
        self.config = config
        self.outcomes = outcomes
        self.switches = KillSwitches()
        #: Items dropped per switch name since start (for tests and metrics).
        self.dropped: dict[str, int] = {}
        #: ``time.monotonic()`` of the last successful read of the hash (0: never).
        self.loaded_at = 0.0
        self._redis = redis
        self._own_redis = False
        self._texts: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    async def start(self) -> None:
        """Read the switches once (best effort), then keep polling."""
        if self._redis is None:
            url = killswitch_redis_url(self.config)
            if not url:
                return
            self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
            self._own_redis = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.refresh(), timeout=2.0)
        self._task = asyncio.create_task(self._poll(), name="killswitch-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._redis is not None and self._own_redis:
            await self._redis.aclose()
        self._redis = None

    async def _poll(self) -> None:
        interval = max(0.05, self.config.killswitches.poll_interval)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("kill-switch refresh failed")

    async def refresh(self) -> bool:
        """Read the hash now; return whether it was read."""
        if self._redis is None:
            return False
        try:
            texts = await load_texts(self._redis, self.config.killswitches.redis_key)
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("cannot read kill-switches from Redis (keeping %d): %s",
                            len(self.switches), exc)  # fmt: skip
                self._failing = True
            return False
        if self._failing:
            log.info("kill-switches readable again")
            self._failing = False
        self.loaded_at = time.monotonic()
        if texts != self._texts:
            self._install(texts)
        return True

    def _install(self, texts: dict[str, str]) -> None:
        switches, errors = KillSwitches.from_texts(texts, self.switches)
        for name, exc in errors.items():
            if self._texts.get(name) != texts.get(name):
                log.error("kill-switch %r is broken and not applied: %s", name, exc)
        added = set(switches.rules) - set(self.switches.rules)
        removed = set(self.switches.rules) - set(switches.rules)
        changed = {
            n for n in set(switches.rules) & set(self.switches.rules)
            if switches.rules[n].text != self.switches.rules[n].text
        }  # fmt: skip
        for name in sorted(added | changed):
            log.warning("kill-switch %r active: %s", name, switches.rules[name].text)
        for name in sorted(removed):
            log.warning("kill-switch %r cleared", name)
        self.switches = switches
        self._texts = texts

    def apply(self, envelope: Envelope, meta: RequestMeta, state: ProjectState | None) -> int:
        """Drop the items a switch matches (with outcomes); return how many were dropped."""
        switches = self.switches
        if not switches or not envelope.items:
            return 0
        key = state.key_config(meta.public_key) if state is not None else None
        scope = Scope(
            project_id=meta.project_id,
            org_id=state.organization_id if state is not None else None,
            key_id=key.numeric_id if key is not None else None,
            client=meta.client,
        )
        dropped = switches.split(envelope, scope)
        for item, name in dropped:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            self.outcomes.item_dropped(
                item, envelope, meta, state, f"killswitch:{name}", OutcomeCode.FILTERED
            )
        return len(dropped)


# --- the ``relay killswitches`` command ------------------------------------------------


def killswitch_command(
    redis_url: str,
    redis_key: str,
    action: str,
    name: str | None = None,
    file: str | None = None,
    assume_yes: bool = False,
) -> int:
    """``relay killswitches list|show|pull|clear``; returns the exit code.

    ``pull NAME FILE`` validates the rule in FILE (``-``: stdin), shows the switch before
    and after, and asks ``[y/N]`` unless ``assume_yes``. ``clear NAME`` asks the same way.
    """
    import sys

    from redis import Redis as SyncRedis

    from relay.killswitch import RuleSyntaxError, decode_hash, parse_rule

    client = SyncRedis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        current = decode_hash(client.hgetall(redis_key))
        if action == "list":
            if not current:
                print("no kill-switches")
            for key in sorted(current):
                print(f"{key}: {current[key]}")
            return 0
        assert name is not None
        before = current.get(name)
        if action == "show":
            if before is None:
                print(f"error: no kill-switch named {name!r}", file=sys.stderr)
                return 1
            print(before)
            return 0
        if action == "pull":
            assert file is not None
            try:
                text = sys.stdin.read() if file == "-" else _read_text(file)
            except OSError as exc:
                print(f"error: cannot read {file}: {exc}", file=sys.stderr)
                return 1
            try:
                rule = parse_rule(text)
            except RuleSyntaxError as exc:
                print(f"error: invalid rule in {file}: {exc}", file=sys.stderr)
                return 1
            after: str | None = rule.text
        else:  # clear
            if before is None:
                print(f"kill-switch {name!r} is not set")
                return 0
            after = None
        print(f"kill-switch {name!r}")
        print(f"  before: {before if before is not None else '(none)'}")
        print(f"  after:  {after if after is not None else '(none)'}")
        if before == after:
            print("unchanged")
            return 0
        if not assume_yes and not _confirm("Apply? [y/N] "):
            print("aborted")
            return 1
        if after is None:
            client.hdel(redis_key, name)
            print(f"cleared {name!r}")
        else:
            client.hset(redis_key, name, after)
            print(f"applied {name!r}")
        return 0
    except RedisError as exc:
        print(f"error: Redis at {redis_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _confirm(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
