"""The DSC across organizations, and envelopes that wait for configs (sampling, global)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgspec
import pytest

from relay.config import config_from_dict
from relay.normalize.dsc import dsc_from_transaction, parse_sample_rate, rebuild_dsc
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState, PublicKeyConfig
from relay.server.ingest import Ingestor
from relay.server.project_cache import ProjectCache
from relay.server.request_meta import RequestMeta
from relay.server.sampling_context import sampling_key, validate_dsc
from tests.unit.ingest_fakes import NoInternalRelays

OWN = "a" * 32
ROOT = "b" * 32
TRACE_ID = "ff62a8b040f340bda5d830223def1d81"

TRANSACTION: dict[str, Any] = {
    "type": "transaction",
    "transaction": "/users",
    "release": "1.0",
    "environment": "prod",
    "user": {"id": 42, "segment": "vip"},
    "contexts": {"trace": {"trace_id": TRACE_ID, "span_id": "968cff94913ebb07"}},
}


def state(org: int, key: str = OWN, project: int = 42, **extra: Any) -> ProjectState:
    return ProjectState(
        project_id=project,
        organization_id=org,
        public_keys=[PublicKeyConfig(public_key=key)],
        **extra,
    )


def envelope(dsc: dict[str, Any] | None, event: dict[str, Any] | None = TRANSACTION) -> Envelope:
    headers: dict[str, Any] = {} if dsc is None else {"trace": dsc}
    items = [] if event is None else [Item.new(ItemType.TRANSACTION, json.dumps(event).encode())]
    return Envelope(headers, items)


# --- pure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rate"),
    [(0.1, 0.1), ("0.25", 0.25), (1, 1.0), ("-1", None), (-0.5, None), ("x", None), (True, None)],
)
def test_parse_sample_rate(value: Any, rate: float | None) -> None:
    assert parse_sample_rate(value) == rate


def test_dsc_from_transaction() -> None:
    assert dsc_from_transaction(TRANSACTION, OWN) == {
        "trace_id": TRACE_ID,
        "public_key": OWN,
        "release": "1.0",
        "environment": "prod",
        "transaction": "/users",
        "replay_id": None,
        "user_segment": "vip",
        "user_id": "42",
    }


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error"},
        {"type": "transaction"},
        {"type": "transaction", "contexts": {"trace": {"trace_id": "nope"}}},
        [],
        None,
    ],
)
def test_no_dsc_without_transaction_trace(event: Any) -> None:
    assert dsc_from_transaction(event, OWN) is None


def test_rebuild_keeps_sample_rate_as_string() -> None:
    original = {"public_key": ROOT, "sample_rate": 0.1, "transaction": "x"}
    dsc = rebuild_dsc(original, TRANSACTION, OWN)
    assert dsc is not None
    assert dsc["sample_rate"] == "0.1"
    assert dsc["public_key"] == OWN
    assert dsc["transaction"] == "/users"
    minimal = {"type": "transaction", "contexts": {"trace": {"trace_id": TRACE_ID}}}
    dsc = rebuild_dsc({"sample_rate": "bad"}, minimal, OWN)
    assert dsc is not None
    assert "sample_rate" not in dsc
    assert dsc["release"] is None


# --- envelopes -------------------------------------------------------------------------


def test_sampling_key() -> None:
    assert sampling_key(envelope({"public_key": ROOT}), OWN) == ROOT
    assert sampling_key(envelope({"public_key": OWN}), OWN) is None
    assert sampling_key(envelope({"public_key": "short"}), OWN) is None
    assert sampling_key(envelope({"public_key": ROOT}, event=None), OWN) is None
    assert sampling_key(envelope(None), OWN) is None


def test_same_organization_keeps_dsc() -> None:
    dsc = {"public_key": ROOT, "trace_id": TRACE_ID, "sample_rate": 0.5, "transaction": "t"}
    env = envelope(dict(dsc))
    validate_dsc(env, OWN, state(1), state(1, key=ROOT, project=43))
    assert env.headers["trace"] == dsc


@pytest.mark.parametrize("sampling", [None, ProjectState(disabled=True), state(2, key=ROOT)])
def test_unusable_root_rebuilds_dsc(sampling: ProjectState | None) -> None:
    env = envelope({"public_key": ROOT, "trace_id": TRACE_ID, "sample_rate": 0.1})
    validate_dsc(env, OWN, state(1), sampling)
    assert env.headers["trace"]["public_key"] == OWN
    assert env.headers["trace"]["transaction"] == "/users"
    assert env.headers["trace"]["sample_rate"] == "0.1"


def test_unusable_root_without_trace_drops_dsc() -> None:
    env = envelope({"public_key": ROOT}, event={"type": "transaction"})
    validate_dsc(env, OWN, state(1), state(2, key=ROOT))
    assert "trace" not in env.headers


def test_invalid_transaction_payload_drops_dsc() -> None:
    env = Envelope({"trace": {"public_key": ROOT}}, [Item.new(ItemType.TRANSACTION, b"{nope")])
    validate_dsc(env, OWN, state(1), None)
    assert "trace" not in env.headers


# --- the ingest path waits for configs -------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.accepted: list[Envelope] = []

    async def accept(
        self, envelope: Envelope, meta: RequestMeta, state: ProjectState
    ) -> asyncio.Future[None] | None:
        self.accepted.append(envelope)
        return None


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def make_ingestor(projects: ProjectCache, sink: _Sink) -> Ingestor:
    config = config_from_dict({})
    return Ingestor(config, projects, NoInternalRelays(), sink, None)  # type: ignore[arg-type]


async def test_transaction_waits_for_root_project() -> None:
    projects = ProjectCache(config_from_dict({}), None, None)
    projects.put(OWN, state(1))
    sink = _Sink()
    ingestor = make_ingestor(projects, sink)
    env = envelope({"public_key": ROOT, "trace_id": TRACE_ID, "sample_rate": 0.1})
    await ingestor.submit(env, RequestMeta(public_key=OWN, project_id=42))
    assert sink.accepted == []
    projects.put(ROOT, state(2, key=ROOT, project=43))
    await settle()
    [forwarded] = sink.accepted
    assert forwarded.headers["trace"]["public_key"] == OWN
    assert forwarded.headers["trace"]["sample_rate"] == "0.1"


async def test_envelopes_wait_for_global_config() -> None:
    projects = ProjectCache(config_from_dict({}), None, None)
    # A relay that fetches from an upstream waits for the global config.
    projects.upstream_source = object()  # type: ignore[assignment]
    assert not projects.global_ready
    projects.put(OWN, state(1))
    sink = _Sink()
    ingestor = make_ingestor(projects, sink)
    await ingestor.submit(envelope(None), RequestMeta(public_key=OWN, project_id=42))
    await settle()
    assert sink.accepted == []
    projects._set_global({"measurements": {}})
    assert projects.global_ready
    await settle()
    assert len(sink.accepted) == 1


class _Upstream:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.authenticated = asyncio.Event()
        self.authenticated.set()

    async def request_json(self, path: str, body: Any) -> Any:
        return msgspec.json.decode(msgspec.json.encode(self.answer))


@pytest.mark.parametrize(
    ("answer", "ready", "message"),
    [
        ({"configs": {}}, False, "global config missing in upstream response"),
        ({"global": {}, "globalStatus": "pending"}, False, "not yet ready"),
        ({"global": {"options": {}}, "globalStatus": "ready"}, True, "received global config"),
        ({"global": {"options": {}}}, True, "received global config"),
    ],
)
async def test_global_config_answers(
    answer: dict[str, Any], ready: bool, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_from_dict({"cache": {"global_config_fetch_interval": 60}})
    projects = ProjectCache(config, _Upstream(answer), None)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="relay.server.project_cache"):
        task = asyncio.create_task(projects._global_loop())
        await settle()
        task.cancel()
    assert projects.global_ready is ready
    assert any(message in record.getMessage() for record in caplog.records)
