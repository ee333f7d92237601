"""Session parsing, validation and extraction: Relay's vectors plus a differential check."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sentry_kafka_schemas
from hypothesis import given
from hypothesis import strategies as st

from relay.kafka.metrics import encode_metric_message
from relay.metrics import (
    Bucket,
    BucketMetadata,
    CounterBucket,
    SetBucket,
    encode_buckets,
    hash_set_value,
    process_sessions,
    session_metrics_enabled,
    should_extract_sessions,
)
from relay.metrics.sessions import (
    InvalidSession,
    SessionContext,
    extract_session_metrics,
    parse_session_aggregates,
    parse_session_update,
    should_extract_abnormal_mechanism,
)
from relay.server.aggregator_service import to_kafka_bucket

STARTED = 1619420400  # 2021-04-26T08:00:00+0100


def _update(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def _extract(raw: str, *, client: str | None = None, mechanism: bool = True) -> list[Bucket]:
    update = parse_session_update(raw.encode())
    return extract_session_metrics(
        update.attributes,
        update,
        client=client,
        received_at=0,
        extract_abnormal_mechanism=mechanism,
    )


def _session(status: str, *, init: bool = False, extra: str = "") -> str:
    flag = "true" if init else "false"
    return (
        f'{{"init": {flag}, "started": "2021-04-26T08:00:00+0100", "attrs": {{"release": "1.0.0"}},'
        f' "did": "user123", "status": "{status}"{extra}}}'
    )


# --- relay-server metrics_extraction/sessions/mod.rs tests -------------------------------


def test_extract_session_metrics_init() -> None:
    metrics = _extract(_session("ok", init=True), client="sentry-test/1.0")
    assert len(metrics) == 2
    session, user = metrics
    assert (session.timestamp, session.name) == (STARTED, "c:sessions/session@none")
    assert isinstance(session, CounterBucket)
    assert session.tags == {"session.status": "init", "release": "1.0.0", "sdk": "sentry-test/1.0"}
    assert (user.timestamp, user.name) == (STARTED, "s:sessions/user@none")
    assert isinstance(user, SetBucket)
    assert user.tags == {"release": "1.0.0", "sdk": "sentry-test/1.0"}


def test_extract_session_metrics_ok() -> None:
    metrics = _extract(_session("ok"))
    assert [(m.name, m.tags) for m in metrics] == [("s:sessions/user@none", {"release": "1.0.0"})]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_session("errored", init=True), 3),
        (_session("errored"), 2),
        (_session("ok", extra=', "errors": 123'), 2),
    ],
)
def test_extract_session_metrics_errored(raw: str, expected: int) -> None:
    metrics = _extract(raw)
    assert len(metrics) == expected
    error, user = metrics[-2:]
    assert error.name == "s:sessions/error@none"
    assert isinstance(error, SetBucket)
    assert error.tags == {"release": "1.0.0"}
    assert user.name == "s:sessions/user@none"
    assert user.tags == {"release": "1.0.0", "session.status": "errored"}


@pytest.mark.parametrize("status", ["crashed", "unhandled"])
def test_extract_session_metrics_fatal(status: str) -> None:
    metrics = _extract(_session(status))
    assert [(m.name, m.tags.get("session.status")) for m in metrics] == [
        ("s:sessions/error@none", None),
        ("s:sessions/user@none", "errored"),
        ("c:sessions/session@none", status),
        ("s:sessions/user@none", status),
    ]
    assert all(m.timestamp == STARTED for m in metrics)


@pytest.mark.parametrize(
    ("mechanism", "expected"),
    [(None, None), ('"none"', None), ('"anr_foreground"', "anr_foreground"), ("null", None)],
)
def test_extract_session_metrics_abnormal(mechanism: str | None, expected: str | None) -> None:
    extra = "" if mechanism is None else f', "abnormal_mechanism": {mechanism}'
    metrics = _extract(_session("abnormal", extra=extra))
    assert len(metrics) == 4
    assert metrics[2].tags == {"release": "1.0.0", "session.status": "abnormal"}
    user = metrics[3]
    want = {"release": "1.0.0", "session.status": "abnormal"}
    if expected is not None:
        want["abnormal_mechanism"] = expected
    assert user.tags == want
    # sessionMetrics version 1 does not extract the mechanism.
    assert (
        "abnormal_mechanism"
        not in _extract(_session("abnormal", extra=extra), mechanism=False)[3].tags
    )


def test_extract_session_metrics_aggregate_snapshot() -> None:
    payload = b"""{
        "aggregates": [
            {"started": "2020-02-07T14:16:00Z", "exited": 143, "abnormal": 5, "crashed": 7,
             "unhandled": 10},
            {"started": "2020-02-07T14:16:01Z", "did": "optional distinct user id",
             "exited": 22, "errored": 3, "unhandled": 10}
        ],
        "attrs": {"release": "my-project-name@1.0.0", "environment": "development"}
    }"""
    aggregates = parse_session_aggregates(payload)
    metrics: list[Bucket] = []
    for item in aggregates.aggregates:
        extract_session_metrics(
            aggregates.attributes,
            item,
            client="sentry-test/1.0",
            received_at=0,
            extract_abnormal_mechanism=True,
            out=metrics,
        )
    common = {
        "environment": "development",
        "release": "my-project-name@1.0.0",
        "sdk": "sentry-test/1.0",
    }

    def c(ts: int, value: float, status: str) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "width": 0,
            "name": "c:sessions/session@none",
            "type": "c",
            "value": value,
            "tags": {**common, "session.status": status},
            "metadata": {"merges": 1, "received_at": 0},
        }

    def s(ts: int, status: str) -> dict[str, Any]:
        return {
            "timestamp": ts,
            "width": 0,
            "name": "s:sessions/user@none",
            "type": "s",
            "value": [3097475539],
            "tags": {**common, "session.status": status},
            "metadata": {"merges": 1, "received_at": 0},
        }

    # The insta snapshot of test_extract_session_metrics_aggregate.
    assert json.loads(encode_buckets(metrics)) == [
        c(1581084960, 165.0, "init"),
        c(1581084960, 22.0, "errored_preaggr"),
        c(1581084960, 5.0, "abnormal"),
        c(1581084960, 10.0, "unhandled"),
        c(1581084960, 7.0, "crashed"),
        c(1581084961, 35.0, "init"),
        c(1581084961, 13.0, "errored_preaggr"),
        s(1581084961, "errored"),
        c(1581084961, 10.0, "unhandled"),
        s(1581084961, "unhandled"),
    ]


@pytest.mark.parametrize(
    "did",
    ["00000000-0000-0000-0000-000000000000", "00000000000000000000000000000000"],
)
def test_nil_distinct_id_is_no_user(did: str) -> None:
    raw = _session("ok", init=True).replace('"user123"', f'"{did}"')
    assert [m.name for m in _extract(raw)] == ["c:sessions/session@none"]


# --- relay-event-schema session.rs parsing ----------------------------------------------


def test_session_defaults() -> None:
    before = datetime.now(UTC)
    update = parse_session_update(
        b'{"started": "2020-02-07T14:16:00Z", "attrs": {"release": "sentry-test@1.0.0"}}'
    )
    assert update.session_id.int != 0
    assert update.status == "ok"
    assert update.errors == 0
    assert not update.init
    assert update.timestamp >= before
    assert update.abnormal_mechanism == "none"


def test_session_abnormal_mechanism_parsing() -> None:
    base = '{"started": "2020-02-07T14:16:00Z", "status": "abnormal", "attrs": {"release": "r"}'
    for raw, expected in [
        (base + ', "abnormal_mechanism": "anr_background"}', "anr_background"),
        (base + ', "abnormal_mechanism": "invalid_mechanism"}', "none"),
        (base + ', "abnormal_mechanism": null}', "none"),
    ]:
        assert parse_session_update(raw.encode()).abnormal_mechanism == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"started": "2020-02-07T14:16:00Z"}',  # release is required
        b'{"started": "2020-02-07T14:16:00Z", "attrs": {}}',
        b'{"attrs": {"release": "r"}}',
        b'{"started": "yesterday", "attrs": {"release": "r"}}',
        b'{"started": "2020-02-07T14:16:00", "attrs": {"release": "r"}}',
        b'{"started": "2020-02-07T14:16:00Z", "errors": -1, "attrs": {"release": "r"}}',
        b'{"started": "2020-02-07T14:16:00Z", "sid": "nope", "attrs": {"release": "r"}}',
        b'{"started": "2020-02-07T14:16:00Z", "attrs": {"release": "r", "ip_address": "x"}}',
        b'{"started": "2020-02-07T14:16:00Z", "did": 5, "attrs": {"release": "r"}}',
        b"not json",
    ],
)
def test_invalid_session_updates(raw: bytes) -> None:
    with pytest.raises(InvalidSession):
        parse_session_update(raw)


def test_session_metrics_config() -> None:
    assert not session_metrics_enabled({})
    assert session_metrics_enabled({"sessionMetrics": {"version": 1}})
    assert session_metrics_enabled({"sessionMetrics": {"version": 3}})
    assert not session_metrics_enabled({"sessionMetrics": {"version": 4}})
    assert not should_extract_abnormal_mechanism({"sessionMetrics": {"version": 1}})
    assert should_extract_abnormal_mechanism({"sessionMetrics": {"version": 2}})
    assert should_extract_sessions({}, processing=True)
    assert not should_extract_sessions({}, processing=False)


# --- normalization: the integration suite's test_session.py cases ------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _ctx(**kwargs: Any) -> SessionContext:
    return SessionContext(received_at=NOW, client="raven-node/2.6.3", **kwargs)


def _suite_session(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sid": "8333339f-5675-4f89-a9a0-1c935255ab58",
        "did": "foobarbaz",
        "seq": 42,
        "init": True,
        "timestamp": NOW.isoformat(),
        "started": (NOW - timedelta(hours=1)).isoformat(),
        "duration": 1947.49,
        "status": "exited",
        "errors": 0,
        "attrs": {"release": "sentry-test@1.0.0", "environment": "production"},
    }
    payload.update(overrides)
    return payload


def test_suite_session_metrics_processing() -> None:
    buckets, parsed = process_sessions([_update(_suite_session())], [], _ctx())
    assert parsed.invalid == 0
    started = int((NOW - timedelta(hours=1)).timestamp())
    tags = {"sdk": "raven-node/2.6.3", "environment": "production", "release": "sentry-test@1.0.0"}
    assert [(b.name, b.timestamp, b.value, b.tags) for b in buckets] == [
        ("c:sessions/session@none", started, 1.0, {**tags, "session.status": "init"}),
        ("s:sessions/user@none", started, [1617781333], tags),
    ]
    assert buckets[0].metadata == BucketMetadata(merges=1, received_at=int(NOW.timestamp()))


def test_session_age_discard() -> None:
    old = (NOW - timedelta(days=5, hours=1)).isoformat()
    buckets, parsed = process_sessions(
        [_update(_suite_session(started=old))],
        [_update({"aggregates": [{"started": old, "exited": 2}], "attrs": {"release": "r"}})],
        _ctx(),
    )
    assert buckets == []
    assert parsed.invalid == 2


def test_session_future_discard_and_timestamp_fix() -> None:
    future = (NOW + timedelta(seconds=61)).isoformat()
    buckets, _ = process_sessions([_update(_suite_session(started=future))], [], _ctx())
    assert buckets == []
    # timestamp before started is raised to started, not rejected
    early = (NOW - timedelta(hours=3)).isoformat()
    buckets, _ = process_sessions([_update(_suite_session(timestamp=early))], [], _ctx())
    assert len(buckets) == 2


@pytest.mark.parametrize("release", ["latest", "", "a/b", ".", "x" * 201])
def test_session_invalid_release(release: str) -> None:
    update = _update(_suite_session(attrs={"release": release}))
    aggregates = _update(
        {"aggregates": [{"started": NOW.isoformat(), "exited": 2}], "attrs": {"release": release}}
    )
    buckets, parsed = process_sessions([update], [aggregates], _ctx())
    assert buckets == []
    assert parsed.invalid == 2


def test_invalid_environment_is_dropped() -> None:
    update = _update(_suite_session(attrs={"release": "r", "environment": "a/b"}))
    buckets, _ = process_sessions([update], [], _ctx())
    assert all("environment" not in b.tags for b in buckets)


def test_clock_drift_correction() -> None:
    # The client clock is two hours behind: started is shifted forward.
    sent_at = NOW - timedelta(hours=2)
    started = NOW - timedelta(hours=2, minutes=30)
    update = _update(_suite_session(started=started.isoformat(), timestamp=sent_at.isoformat()))
    buckets, _ = process_sessions([update], [], _ctx(sent_at=sent_at))
    assert buckets[0].timestamp == int((NOW - timedelta(minutes=30)).timestamp())
    # Below 55 minutes nothing moves.
    buckets, _ = process_sessions([update], [], _ctx(sent_at=NOW - timedelta(minutes=50)))
    assert buckets[0].timestamp == int(started.timestamp())


def test_ip_auto_and_filter_hook() -> None:
    payload = _suite_session(attrs={"release": "sentry-bad@1.0.0", "ip_address": "{{auto}}"})
    seen: list[str | None] = []

    def keep(attrs: Any) -> bool:
        seen.append(attrs.release)
        return not attrs.release.startswith("sentry-bad")

    buckets, parsed = process_sessions(
        [_update(payload)], [], _ctx(client_addr="1.2.3.4"), keep=keep
    )
    assert buckets == []
    assert seen == ["sentry-bad@1.0.0"]
    parsed2 = process_sessions([_update(payload)], [], _ctx(client_addr="1.2.3.4"))[1]
    assert parsed2.updates[0].attributes.ip_address == "1.2.3.4"
    assert parsed.quantity == 0


# --- differential: extraction vs an independent model of the spec table ------------------

_STATUSES = ["ok", "exited", "crashed", "abnormal", "errored", "unhandled", "bogus"]


def _model_update(p: dict[str, Any], client: str | None) -> Counter[tuple[str, str, Any]]:
    """What Relay's documentation says a session update produces (name, tags, value)."""
    common = {"release": p["attrs"]["release"], **({"sdk": client} if client else {})}
    out: Counter[tuple[str, str, Any]] = Counter()

    def add(name: str, tags: dict[str, str], value: Any) -> None:
        out[(name, json.dumps({**common, **tags}, sort_keys=True), value)] += 1

    status, did = p["status"], p.get("did")
    errored = p["errors"] > 0 or status not in ("ok", "exited")
    if p["init"]:
        add("c:sessions/session@none", {"session.status": "init"}, 1.0)
    if errored:
        add("s:sessions/error@none", {}, hash_set_value(p["sid"]))
    if did:
        add(
            "s:sessions/user@none",
            {"session.status": "errored"} if errored else {},
            hash_set_value(did),
        )
    if status in ("abnormal", "unhandled", "crashed"):
        add("c:sessions/session@none", {"session.status": status}, 1.0)
        if did:
            add("s:sessions/user@none", {"session.status": status}, hash_set_value(did))
    return out


@given(
    status=st.sampled_from(_STATUSES),
    init=st.booleans(),
    errors=st.integers(0, 3),
    did=st.one_of(st.none(), st.text("abcdef0123", min_size=1, max_size=12)),
    client=st.one_of(st.none(), st.just("sentry.python/2.0")),
    release=st.sampled_from(["1.0", "app@2.0+build", "ü-release"]),
)
def test_differential_session_updates(
    status: str, init: bool, errors: int, did: str | None, client: str | None, release: str
) -> None:
    payload = {
        "sid": str(uuid.UUID(int=hash((status, init, errors)) & ((1 << 128) - 1) | 1)),
        "did": did,
        "init": init,
        "errors": errors,
        "status": status,
        "started": NOW.isoformat(),
        "attrs": {"release": release},
    }
    ctx = SessionContext(received_at=NOW, client=client)
    buckets, _ = process_sessions([_update(payload)], [], ctx)
    got: Counter[tuple[str, str, Any]] = Counter()
    for b in buckets:
        value = b.value[0] if isinstance(b, SetBucket) else b.value
        got[(b.name, json.dumps(b.tags, sort_keys=True), value)] += 1
    assert got == _model_update(payload, client)
    # Every bucket is a valid ingest-metrics message once written by the processing relay.
    codec = sentry_kafka_schemas.get_codec("ingest-metrics")
    for b in buckets:
        message = encode_metric_message(
            to_kafka_bucket(b), org_id=1, project_id=42, retention_days=90, received_at=1
        )
        codec.validate(json.loads(message))


@given(
    counts=st.lists(st.integers(0, 5), min_size=5, max_size=5),
    did=st.one_of(st.none(), st.just("user")),
)
def test_differential_aggregates(counts: list[int], did: str | None) -> None:
    exited, errored, abnormal, unhandled, crashed = counts
    item = {
        "started": NOW.isoformat(),
        "exited": exited,
        "errored": errored,
        "abnormal": abnormal,
        "unhandled": unhandled,
        "crashed": crashed,
        "did": did,
    }
    payload = _update({"aggregates": [item], "attrs": {"release": "r"}})
    buckets, _ = process_sessions([], [payload], SessionContext(received_at=NOW))
    sessions = {b.tags["session.status"]: b.value for b in buckets if isinstance(b, CounterBucket)}
    total = sum(counts)
    errors = errored + abnormal + unhandled + crashed
    expected = {
        k: float(v)
        for k, v in [
            ("init", total),
            ("errored_preaggr", errors),
            ("abnormal", abnormal),
            ("unhandled", unhandled),
            ("crashed", crashed),
        ]
        if v > 0
    }
    assert sessions == expected
    users = sorted(b.tags.get("session.status", "") for b in buckets if isinstance(b, SetBucket))
    want = []
    if did:
        want = ["errored" if errors else ""] + [
            s
            for s, n in [("abnormal", abnormal), ("unhandled", unhandled), ("crashed", crashed)]
            if n
        ]
    assert users == sorted(want)
