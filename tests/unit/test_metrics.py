"""Metric buckets, MRIs and size batching, against Relay's own test vectors."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.metrics import (
    Bucket,
    BucketMetadata,
    CounterBucket,
    DistributionBucket,
    GaugeBucket,
    GaugeValue,
    MetricResourceIdentifier,
    ParseMetricError,
    SetBucket,
    decode_buckets,
    encode_buckets,
    hash_set_value,
    is_valid_namespace,
    normalize_bucket,
    parse_mri,
    prepare_buckets,
    split_by_size,
    validate_bucket,
)
from relay.metrics.bucket import bucket_value_len, estimated_size
from relay.metrics.mri import normalize_tag_value, parse_metric_unit

# relay-metrics/tests/fixtures/buckets.json (the documented example of the format).
FIXTURE = b"""[
  {"timestamp": 1615889440, "width": 0,
   "name": "d:transactions/endpoint.response_time@millisecond", "type": "d",
   "value": [36.0, 49.0, 57.0, 68.0], "tags": {"route": "user_index"}},
  {"timestamp": 1615889440, "width": 0, "name": "c:transactions/endpoint.hits@none",
   "type": "c", "value": 4.0, "tags": {"route": "user_index"}},
  {"timestamp": 1615889440, "width": 0,
   "name": "g:transactions/endpoint.parallel_requests@none", "type": "g",
   "value": {"last": 25.0, "min": 17.0, "max": 42.0, "sum": 220.0, "count": 85},
   "tags": {"route": "user_index"}},
  {"timestamp": 1615889440, "width": 0, "name": "s:transactions/endpoint.users@none",
   "type": "s", "value": [3182887624, 4267882815], "tags": {"route": "user_index"}}
]"""


def _json(data: bytes) -> Any:
    return json.loads(data)


# --- wire format ------------------------------------------------------------------------


def test_fixture_roundtrip() -> None:
    buckets = decode_buckets(FIXTURE)
    assert [type(b) for b in buckets] == [
        DistributionBucket,
        CounterBucket,
        GaugeBucket,
        SetBucket,
    ]
    assert _json(encode_buckets(buckets)) == _json(FIXTURE)


def test_parse_bucket_with_metadata_and_unit_key() -> None:
    # bucket.rs test_parse_buckets: an unknown "unit" key is ignored, ints become floats.
    raw = b"""[{"name": "endpoint.response_time", "unit": "millisecond",
      "value": [36, 49, 57, 68], "type": "d", "timestamp": 1615889440, "width": 10,
      "tags": {"route": "user_index"},
      "metadata": {"merges": 1, "received_at": 1615889440}}]"""
    (bucket,) = decode_buckets(raw)
    assert isinstance(bucket, DistributionBucket)
    assert bucket.value == [36.0, 49.0, 57.0, 68.0]
    assert bucket.metadata == BucketMetadata(merges=1, received_at=1615889440)
    assert bucket.width == 10


def test_parse_bucket_defaults() -> None:
    raw = b"""[{"name": "endpoint.hits", "value": 4, "type": "c",
      "timestamp": 1615889440, "width": 10}]"""
    (bucket,) = decode_buckets(raw)
    assert bucket == CounterBucket(timestamp=1615889440, width=10, name="endpoint.hits", value=4.0)
    assert bucket.tags == {}
    assert bucket.merges == 1
    assert _json(encode_buckets([bucket])) == [
        {"timestamp": 1615889440, "width": 10, "name": "endpoint.hits", "type": "c", "value": 4.0}
    ]


def test_metadata_serialized_like_relay() -> None:
    bucket = CounterBucket(
        timestamp=1, width=0, name="c:sessions/a@none", value=1.0, metadata=BucketMetadata(0)
    )
    assert _json(encode_buckets([bucket]))[0]["metadata"] == {"merges": 0, "received_at": None}


@pytest.mark.parametrize(
    "raw",
    [
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "q", "value": 1}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "c", "value": "1"}]',
        b'[{"timestamp": -1, "width": 0, "name": "x", "type": "c", "value": 1}]',
        b'[{"timestamp": 1, "name": "x", "type": "c", "value": 1}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "s", "value": [4294967296]}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "s", "value": [-1]}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "c", "value": 1e400}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "g", "value": {"last": 1}}]',
        b'[{"timestamp": 1, "width": 0, "name": "x", "type": "c", "value": 1,'
        b' "metadata": {"received_at": 1}}]',
    ],
)
def test_invalid_payload_drops_whole_item(raw: bytes) -> None:
    good = b'{"timestamp": 1, "width": 0, "name": "c:sessions/a", "type": "c", "value": 1}, '
    with pytest.raises(msgspec.DecodeError):
        decode_buckets(b"[" + good + raw[1:])


def test_set_values_sorted_and_unique() -> None:
    raw = b'[{"timestamp": 1, "width": 0, "name": "s:sessions/u", "type": "s", "value": [3,1,3]}]'
    (bucket,) = decode_buckets(raw)
    assert bucket.value == [1, 3]


def test_hash_set_value_fnv1a() -> None:
    # Values from Relay's session tests and integration suite.
    assert hash_set_value("foobarbaz") == 1617781333
    assert hash_set_value("optional distinct user id") == 3097475539


# --- MRIs (relay-base-schema mri.rs / units.rs) -----------------------------------------


@pytest.mark.parametrize("raw", ["c:foo@none", "c:foo", "c:foo@something", "foo", "x:spans/a"])
def test_parse_mri_errors(raw: str) -> None:
    with pytest.raises(ParseMetricError):
        parse_mri(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("c:transactions/foo", ("c", "transactions", "foo", "none")),
        ("c:transactions/foo@millisecond", ("c", "transactions", "foo", "millisecond")),
        ("c:something/foo", ("c", "unsupported", "foo", "none")),
        ("c:spans/foo@something", ("c", "spans", "foo", "something")),
        ("d:spans/foo.bar.blob-size@second", ("d", "spans", "foo.bar.blob_size", "second")),
        ("c:spans/f?o", ("c", "spans", "f_o", "none")),
        ("c:spans/f??o", ("c", "spans", "f_o", "none")),
        ("c:spans/föo", ("c", "spans", "f_o", "none")),
        ("ms:spans/x@ms", ("d", "spans", "x", "millisecond")),
        ("m:sessions/x@", ("c", "sessions", "x", "none")),
        ("h:sessions/x@Foo", ("d", "sessions", "x", "foo")),
    ],
)
def test_parse_mri(raw: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_mri(raw) == MetricResourceIdentifier(*expected)


def test_mri_display() -> None:
    assert str(parse_mri("c:transactions/foo@millisecond")) == "c:transactions/foo@millisecond"
    assert str(parse_mri("c:sessions/session")) == "c:sessions/session@none"


def test_normalize_name_length() -> None:
    long = (
        "ThisIsACharacterLongStringForTestingPurposesToEnsureThatWeHaveEnoughCharactersToWork"
        "WithAndToCheckIfOurFunctionProperlyHandlesSlicingAndNormalizationWithoutErrors"
    )
    assert parse_mri(f"c:spans/{long}").name == long[:150]
    replaced = long.replace("AC", "ÄÂÏC", 1).replace("Testing", "Ťesting")
    assert parse_mri(f"c:spans/{replaced}").name == (
        "ThisIs_CharacterLongStringFor_estingPurposesToEnsureThatWeHaveEnoughCharactersToWork"
        "WithAndToCheckIfOurFunctionProperlyHandlesSlicingAndNormalizationW"
    )


def test_custom_units() -> None:
    assert parse_metric_unit("Foo") == "foo"
    assert parse_metric_unit("0123456789abcde") == "0123456789abcde"
    assert parse_metric_unit("") == "none"
    for bad in ("this_is_a_unit_that_is_too_long", "foo bar", "foo/bar", "foo-bar", "föö"):
        with pytest.raises(ParseMetricError):
            parse_metric_unit(bad)


# --- normalization (relay-metrics protocol.rs) ------------------------------------------


def _counter(name: str, tags: dict[str, str] | None = None, value: float = 0.0) -> CounterBucket:
    return CounterBucket(timestamp=5000, width=0, name=name, tags=tags or {}, value=value)


def test_normalize_invalid_name() -> None:
    assert not normalize_bucket(_counter("c:transactions/\0hergus.bergus@none"))


def test_normalize_invalid_namespace() -> None:
    assert not normalize_bucket(_counter("c:lol/hergus.bergus@none"))


def test_normalize_name() -> None:
    bucket = _counter("c:spans/hergus\0\0bergus")
    assert normalize_bucket(bucket)
    assert bucket.name == "c:spans/hergus_bergus@none"


def test_normalize_tag_key_chars() -> None:
    bucket = _counter(
        "c:spans/hergus.bergus",
        {"is_it_garbage": "a\0b\0s\0o\0l\0u\0t\0e\0l\0y", "another\0garbage": "bye"},
    )
    assert normalize_bucket(bucket)
    assert _json(encode_buckets([bucket])) == [
        {
            "timestamp": 5000,
            "width": 0,
            "name": "c:spans/hergus.bergus@none",
            "type": "c",
            "value": 0.0,
            "tags": {"is_it_garbage": "absolutely"},
        }
    ]
    assert normalize_tag_value("tab\there\x85") == "tabhere"


def test_namespaces_by_source() -> None:
    # processor/metrics.rs is_valid_namespace
    for name, untrusted in [
        ("c:sessions/a@none", True),
        ("c:spans/a@none", False),
        ("c:transactions/a@none", False),
        ("c:outcomes/a@none", False),
        ("c:custom/a@none", False),
    ]:
        bucket = _counter(name)
        assert is_valid_namespace(bucket, internal=False) is untrusted
        assert is_valid_namespace(bucket, internal=True) is (name != "c:custom/a@none")


def test_prepare_buckets_resets_metadata_for_untrusted() -> None:
    buckets: list[Bucket] = [
        _counter("c:sessions/foo"),
        _counter("c:transactions/bar"),
        _counter("c:bogus/x"),
    ]
    buckets[0].metadata = BucketMetadata(merges=7, received_at=1)
    out = prepare_buckets(buckets, internal=False, received_at=1234, drift_secs=3600)
    assert [(b.name, b.timestamp, b.metadata) for b in out] == [
        ("c:sessions/foo@none", 8600, BucketMetadata(merges=1, received_at=1234))
    ]
    trusted = prepare_buckets(
        [_counter("c:transactions/bar", value=1.0)], internal=True, received_at=1
    )
    assert [b.name for b in trusted] == ["c:transactions/bar@none"]
    assert trusted[0].metadata is None


def test_validate_bucket_lengths() -> None:
    assert not validate_bucket(_counter("c:sessions/" + "a" * 200))
    bucket = _counter("c:sessions/a", {"k" * 201: "v", "ok": "ü" * 200, "long": "x" * 201})
    assert validate_bucket(bucket)
    assert bucket.tags == {"ok": "ü" * 200}


# --- batching by size (relay-metrics view.rs) --------------------------------------------


def _view_buckets() -> list[Bucket]:
    return [
        CounterBucket(timestamp=5000, width=0, name="c:spans/b0@none", value=1.0),
        CounterBucket(timestamp=5000, width=0, name="c:spans/b1@none", value=12.0),
        DistributionBucket(
            timestamp=5000, width=0, name="d:spans/b2@none", value=[1.0, 2.0, 3.0, 5.0, 5.0]
        ),
        SetBucket(timestamp=5000, width=0, name="s:spans/b3@none", value=[42, 75]),
    ]


def _gauge(name: str) -> GaugeBucket:
    return GaugeBucket(
        timestamp=5000, width=0, name=name, value=GaugeValue(25.0, 17.0, 42.0, 220.0, 85)
    )


def _shape(batches: list[list[Bucket]]) -> list[tuple[int, int]]:
    out = []
    for batch in batches:
        values = sum(bucket_value_len(b) for b in batch)
        out.append((values, sum(estimated_size(b) for b in batch)))
    return out


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (100, [(1, 73), (1, 73), (4, 97), (1, 73), (2, 81)]),
        (250, [(6, 243), (3, 154)]),
        (500, [(9, 332)]),
        (50, []),
    ],
)
def test_split_by_size(size: int, expected: list[tuple[int, int]]) -> None:
    assert _shape(list(split_by_size(_view_buckets(), size))) == expected


def test_split_does_not_split_gauges() -> None:
    assert list(split_by_size([_gauge("g:transactions/foo@none")], 100)) == []


def test_split_serialized_partial() -> None:
    buckets = _view_buckets()[1:]
    for bucket in buckets[:2]:
        bucket.tags = {"foo": "", "bar": "baz"}
    buckets.append(_gauge("g:spans/b4@none"))
    batches = [_json(encode_buckets(batch)) for batch in split_by_size(buckets, 178)]
    # relay_metrics__view__tests__buckets_view_serialize_partial.snap
    tags = {"bar": "baz", "foo": ""}
    assert batches == [
        [
            {"timestamp": 5000, "width": 0, "name": "c:spans/b1@none", "type": "c",
             "value": 12.0, "tags": tags},
            {"timestamp": 5000, "width": 0, "name": "d:spans/b2@none", "type": "d",
             "value": [1.0, 2.0], "tags": tags},
        ],
        [
            {"timestamp": 5000, "width": 0, "name": "d:spans/b2@none", "type": "d",
             "value": [3.0, 5.0, 5.0], "tags": tags,
             "metadata": {"merges": 0, "received_at": None}},
            {"timestamp": 5000, "width": 0, "name": "s:spans/b3@none", "type": "s",
             "value": [42]},
        ],
        [
            {"timestamp": 5000, "width": 0, "name": "s:spans/b3@none", "type": "s",
             "value": [75], "metadata": {"merges": 0, "received_at": None}},
            {"timestamp": 5000, "width": 0, "name": "g:spans/b4@none", "type": "g",
             "value": {"last": 25.0, "min": 17.0, "max": 42.0, "sum": 220.0, "count": 85}},
        ],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("max_bytes", "expected"),
    [
        (1000, [list(range(1, 18))]),
        (200, [list(range(1, 17)), [17]]),
        (130, [list(range(1, 8)), list(range(8, 15)), [15, 16, 17]]),
        (100, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15], [16, 17]]),
        (50, []),
    ],
)
def test_max_flush_bytes_like_integration_suite(max_bytes: int, expected: list[list[int]]) -> None:
    # tests/integration/test_metrics.py::test_metrics_max_batch_size
    bucket = DistributionBucket(
        timestamp=999994711,
        width=1,
        name="d:sessions/foo@none",
        value=[float(i) for i in range(1, 18)],
        metadata=BucketMetadata(merges=1, received_at=100),
    )
    batches = list(split_by_size([bucket], max_bytes))
    parts = [b for (b,) in batches if isinstance(b, DistributionBucket)]
    assert [[int(v) for v in b.value] for b in parts] == expected
    assert [b.metadata for (b,) in batches] == [
        BucketMetadata(merges=1 if i == 0 else 0, received_at=100) for i in range(len(expected))
    ]
