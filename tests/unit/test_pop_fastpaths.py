"""The POP's fast paths give exactly what the full code paths give.

``RateLimiting.enforce_cached`` skips the envelope checks when the key has no active cached
limit and the project no ``limit: 0`` quota; the log items of ``eap_items`` are not walked
by an empty scrubber. Each is compared with the slow path it replaces, and the log size
(``log_byte_size``, which skips encoding ASCII strings) with Relay's UTF-8 sizes written out.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import pytest

from relay.config import config_from_dict
from relay.normalize.ourlogs import LOG_CONTAINER_CONTENT_TYPE, log_byte_size
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import DataCategory, ItemType
from relay.protocol.project_config import ProjectState
from relay.quotas import RateLimit, RateLimits
from relay.quotas.quota import QuotaScope
from relay.quotas.rate_limit import RateLimitScope
from relay.server.eap_items import SPAN_CONTAINER_CONTENT_TYPE, process_eap_items
from relay.server.outcomes import OutcomeSink
from relay.server.rate_limiting import RateLimiting
from relay.server.request_meta import RequestMeta

KEY = "a" * 32
META = RequestMeta(public_key=KEY, project_id=42, user_agent="sentry.python/2.75.0")


def project(quotas: list[dict[str, Any]] | None = None, **config: Any) -> ProjectState:
    if quotas is not None:
        config["quotas"] = quotas
    return msgspec.convert(
        {
            "projectId": 42,
            "organizationId": 1,
            "publicKeys": [{"publicKey": KEY, "numericId": 7}],
            "config": config,
        },
        ProjectState,
    )


# --- rate limiting ----------------------------------------------------------------------


def envelope() -> Envelope:
    return Envelope(
        {"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"},
        [
            Item.new(ItemType.EVENT, b'{"message": "hi"}'),
            Item.new(ItemType.ATTACHMENT, b"abc", filename="a.txt"),
            Item.new(ItemType.SESSION, b'{"sid": "x"}'),
        ],
    )


def limit(category_names: list[str], expires_in: float) -> RateLimit:
    return RateLimit(
        categories=frozenset(DataCategory.from_name(name) for name in category_names),
        scope=RateLimitScope(QuotaScope.ORGANIZATION, 1),
        reason_code="r",
        expires_at=time.monotonic() + expires_in,
    )


def run(
    limiter_setup: list[RateLimit], state: ProjectState, *, fast: bool
) -> tuple[list[str], dict[Any, int], tuple[int, str] | None]:
    outcomes = OutcomeSink(config_from_dict({"outcomes": {"emit_outcomes": True}}))
    limiting = RateLimiting(outcomes)
    if limiter_setup:
        limiting.cache_for(KEY).merge(RateLimits(limiter_setup))
    if not fast:
        # The full path: as if something might be limited.
        limiting._nothing_limited = lambda *_: False  # type: ignore[method-assign]
    env = envelope()
    answer = limiting.enforce_cached(env, META, state)
    verdict = None if answer is None else (answer.status, answer.rate_limits or "")
    return [item.type for item in env.items], dict(outcomes.totals), verdict


CASES = [
    pytest.param([], project(), id="nothing"),
    pytest.param([], project([{"id": "q", "categories": ["error"], "limit": 10}]), id="quota"),
    pytest.param(
        [],
        project([{"id": "q", "categories": ["error"], "limit": 0, "reasonCode": "r"}]),
        id="reject-all",
    ),
    pytest.param([limit(["error"], 60)], project(), id="cached-error"),
    pytest.param([limit(["transaction"], 60)], project(), id="cached-other"),
    pytest.param([limit(["error"], -1)], project(), id="expired"),
    pytest.param([limit(["attachment"], 60)], project(), id="cached-attachment"),
]


@pytest.mark.parametrize(("limits", "state"), CASES)
def test_enforce_cached_fast_path_matches_full_path(
    limits: list[RateLimit], state: ProjectState
) -> None:
    assert run(limits, state, fast=True) == run(limits, state, fast=False)


def test_fast_path_taken_only_without_limits() -> None:
    limiting = RateLimiting(OutcomeSink(config_from_dict({})))
    assert limiting._nothing_limited(KEY, ())
    limiting.cache_for(KEY).merge(RateLimits([limit(["error"], 60)]))
    assert not limiting._nothing_limited(KEY, ())
    assert limiting._nothing_limited("b" * 32, ())


def test_cached_limit_still_answers_429() -> None:
    _, totals, verdict = run([limit(["error"], 60)], project(), fast=True)
    assert verdict is not None and verdict[0] == 429
    assert totals


# --- log and span containers ------------------------------------------------------------


class _Odd(str):
    """A str subclass: sized by the reference function."""


SIZE_CASES: list[dict[str, Any]] = [
    {},
    {"body": ""},
    {"body": "hello"},
    {"body": "héllo wörld ✓"},
    {"body": 5, "attributes": None},
    {"body": "x", "attributes": []},
    {"__header": {"byte_size": 3}, "body": "abc", "attributes": {}},
    {
        "body": "ascii",
        "attributes": {
            "s": {"type": "string", "value": "v"},
            "ü": {"type": "string", "value": "ß"},
            "i": {"type": "integer", "value": 3},
            "f": {"type": "double", "value": 1.5},
            "b": {"type": "boolean", "value": True},
            "n": {"type": "string", "value": None},
            "missing": {"type": "string"},
            "not-a-dict": "plain",
            "list": ["a"],
        },
    },
    {"body": "x", "attributes": {"a": {"value": ["ab", 1, True, None, {"k": "vv"}]}}},
    {"body": "x", "attributes": {"a": {"value": {"nested": "yes", "n": 2}}}},
    {"body": _Odd("odd"), "attributes": {"a": {"value": _Odd("é")}}},
    {"body": "x", "attributes": {"a": {"value": 2**70}}},
    {"body": "x", "attributes": {"a": {"value": b"bytes"}}},
]


def _spelled_out_size(value: Any) -> int:
    # Relay's canonical sizes, written out: UTF-8 bytes of strings, 1 per bool, 8 per
    # number, containers summed (object keys counted too), anything else 0.
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 8
    if isinstance(value, list):
        return sum(map(_spelled_out_size, value))
    if isinstance(value, dict):
        return sum(len(str(k).encode("utf-8")) + _spelled_out_size(v) for k, v in value.items())
    return 0


def _spelled_out_log_size(entry: dict[str, Any]) -> int:
    body = entry.get("body")
    size = len(body.encode("utf-8")) if isinstance(body, str) else 0
    attributes = entry.get("attributes")
    if isinstance(attributes, dict):
        for name, attr in attributes.items():
            size += len(str(name).encode("utf-8"))
            if isinstance(attr, dict):
                size += _spelled_out_size(attr.get("value"))
    return max(size, 1)


@pytest.mark.parametrize("entry", SIZE_CASES)
def test_log_byte_size_is_the_utf8_size(entry: dict[str, Any]) -> None:
    # The `__header` is not sized: the first relay measures before adding it.
    assert log_byte_size(entry) == _spelled_out_log_size(entry)


def test_log_byte_size_of_dict_subclass_attributes() -> None:
    class Attrs(dict[str, Any]):
        pass

    entry = {"body": "b", "attributes": Attrs(a={"value": "é"})}
    assert log_byte_size(entry) == 1 + 1 + 2


def log_item(*logs: dict[str, Any]) -> Item:
    payload = json.dumps({"version": 2, "items": list(logs)}).encode()
    return Item.new(ItemType.LOG, payload, content_type=LOG_CONTAINER_CONTENT_TYPE)


def test_logs_get_header_first_and_normalized_without_scrubbing() -> None:
    item = log_item({"body": "héllo", "level": "info", "attributes": {"k": {"value": 1}}})
    meta = RequestMeta(public_key=KEY, project_id=42, user_agent="ua/1", received_at=2.0)
    process_eap_items(Envelope({}, [item]), meta, project())
    [entry] = json.loads(item.payload)["items"]
    assert next(iter(entry)) == "__header"
    assert entry["__header"] == {"byte_size": len("héllo".encode()) + 1 + 8}
    assert entry["attributes"]["sentry.relay.ingress"] == {"type": "string", "value": "container"}
    assert entry["attributes"]["sentry.observed_timestamp_nanos"]["value"] == str(2 * 10**9)
    # Version 2 containers take the user agent only when their ingest settings ask for it.
    assert "user_agent.original" not in entry["attributes"]


def test_logs_still_scrubbed_with_datascrubbing() -> None:
    item = log_item({"body": "b", "attributes": {"password": {"type": "string", "value": "x"}}})
    state = project(datascrubbingSettings={"scrubData": True, "scrubDefaults": True})
    process_eap_items(Envelope({}, [item]), META, state)
    [entry] = json.loads(item.payload)["items"]
    assert entry["attributes"]["password"]["value"] == "[Filtered]"


def test_span_header_moves_to_front_even_without_scrubbing() -> None:
    span = {"span_id": "1", "__header": {"x": 1}, "name": "s"}
    payload = json.dumps({"version": 2, "items": [span, {"span_id": "2"}]}).encode()
    item = Item.new(ItemType.SPAN, payload, content_type=SPAN_CONTAINER_CONTENT_TYPE)
    process_eap_items(Envelope({}, [item]), META, project())
    first, second = json.loads(item.payload)["items"]
    assert list(first) == ["__header", "span_id", "name"]
    assert second == {"span_id": "2"}
