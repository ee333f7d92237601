"""Where kill-switches live: one Redis hash, switch name -> rule text.

Every relay polls the hash (``HGETALL``, one round trip) and recompiles only the rules
whose text changed. Writers (``relay killswitches pull``) validate a rule before they
store it, so a broken rule in the hash can only come from a hand edit: readers skip it
with an error log and keep applying the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

#: The default Redis key of the hash (``killswitches.redis_key`` overrides it).
DEFAULT_REDIS_KEY = "relay:killswitches"


class AsyncHashReader(Protocol):
    """The one Redis call the loader needs (``redis.asyncio.Redis`` has it)."""

    def hgetall(self, name: str) -> Awaitable[Any]: ...


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """``HGETALL``'s answer (bytes or str) as text."""

    def text(value: Any) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    return {text(k): text(v) for k, v in raw.items()}


async def load_texts(redis: AsyncHashReader, key: str = DEFAULT_REDIS_KEY) -> dict[str, str]:
    """The named rule texts stored in Redis."""
    return decode_hash(await redis.hgetall(key))
