"""Tier 3: real processes, real clients (sentry-sdk, sentry-cli, HTTP), asserting on Kafka."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from relay.dev.chain import DEMO_PUBLIC_KEY, LocalChain
from tests.kafka_utils import by_event_id, collect
from tests.paths import CORPUS

HERE = Path(__file__).parent
AUTH = f"Sentry sentry_key={DEMO_PUBLIC_KEY}, sentry_version=7, sentry_client=e2e/1.0"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST and return status and the JSON answer (error answers included)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sentry_cli() -> str:
    found = shutil.which("sentry-cli") or str(Path(sys.executable).parent / "sentry-cli")
    return found


@pytest.mark.e2e
async def test_sdk_error_and_transaction_reach_kafka(chain: LocalChain) -> None:
    out = subprocess.run(
        [sys.executable, str(HERE / "sdk_client.py"), chain.dsn],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    sent = json.loads(out.stdout.strip().splitlines()[-1])
    error_id, tx_id = sent["error"], sent["transaction"]

    events = await collect(
        chain.kafka_bootstrap, "ingest-events", lambda ms: bool(by_event_id(ms, error_id))
    )
    [message] = by_event_id(events, error_id)
    assert message["type"] == "event"
    assert message["project_id"] == 42
    payload = json.loads(message["payload"])
    assert payload["event_id"] == uuid.UUID(error_id).hex
    [exc] = payload["exception"]["values"]
    assert exc["type"] == "ZeroDivisionError"
    assert exc["value"] == "e2e division by zero"
    assert payload["release"] == "e2e@1.0.0"
    assert payload["sdk"]["name"] == "sentry.python"
    assert message["remote_addr"] == "127.0.0.1"

    txs = await collect(
        chain.kafka_bootstrap, "ingest-transactions", lambda ms: bool(by_event_id(ms, tx_id))
    )
    [tx] = by_event_id(txs, tx_id)
    assert tx["project_id"] == 42
    tx_payload = json.loads(tx["payload"])
    assert tx_payload["type"] == "transaction"
    assert tx_payload["transaction"] == "e2e-transaction"
    assert [s["op"] for s in tx_payload["spans"]] == ["db"]


@pytest.mark.e2e
async def test_sentry_cli_send_envelope(chain: LocalChain, tmp_path: Path) -> None:
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "message": "sent by sentry-cli", "level": "error"}
    payload = json.dumps(event).encode()
    envelope = tmp_path / "cli.envelope"
    envelope.write_bytes(
        json.dumps({"event_id": event_id}).encode() + b"\n"
        + json.dumps({"type": "event", "length": len(payload)}).encode() + b"\n"
        + payload + b"\n"
    )  # fmt: skip
    subprocess.run(
        [sentry_cli(), "send-envelope", str(envelope)],
        env={"SENTRY_DSN": chain.dsn, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    events = await collect(
        chain.kafka_bootstrap, "ingest-events", lambda ms: bool(by_event_id(ms, event_id))
    )
    [message] = by_event_id(events, event_id)
    assert message["project_id"] == 42
    assert json.loads(message["payload"])["logentry"]["formatted"] == "sent by sentry-cli"


def _corpus_requests() -> list[tuple[str, bytes, dict[str, Any]]]:
    requests = []
    for meta_path in sorted((CORPUS / "wire").glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        meta["headers"] = dict(meta["headers"])
        body = meta_path.with_name(meta_path.name.replace(".meta.json", ".body")).read_bytes()
        requests.append((meta_path.name.split(".")[0], body, meta))
    return requests


@pytest.mark.e2e
async def test_corpus_posts_through_the_chain(chain: LocalChain) -> None:
    """Every recorded SDK request is accepted; its events and transactions land in Kafka."""
    requests = _corpus_requests()
    assert len(requests) == 44
    expected: dict[str, set[str]] = {"ingest-events": set(), "ingest-transactions": set(),
                                     "ingest-attachments": set()}  # fmt: skip
    for name, body, meta in requests:
        headers = {k: v for k, v in meta["headers"].items()
                   if k.lower() in ("content-type", "content-encoding", "x-sentry-auth",
                                    "user-agent")}  # fmt: skip
        path = meta["path"]
        status, answer = post(f"{chain.pop.url}{path}", body, headers)
        assert status == 200, (name, answer)
        raw = gzip.decompress(body) if meta["headers"].get("Content-Encoding") == "gzip" else body
        header = json.loads(raw.split(b"\n", 1)[0])
        types = [json.loads(line)["type"] for line in _item_headers(raw)]
        if "event" in types and "attachment" in types:
            expected["ingest-attachments"].add(header["event_id"])
        elif "event" in types:
            expected["ingest-events"].add(header["event_id"])
        elif "transaction" in types:
            expected["ingest-transactions"].add(header["event_id"])
    for topic, ids in expected.items():
        assert ids
        wanted = {i.replace("-", "") for i in ids}
        messages = await collect(
            chain.kafka_bootstrap, topic,
            lambda ms, w=wanted: w <= {str(m.get("event_id")) for m in ms},  # type: ignore[misc]
        )  # fmt: skip
        found = {str(m.get("event_id")) for m in messages if m.get("type") == "event"}
        assert wanted <= found, f"{topic}: missing {wanted - found}"


def _item_headers(raw: bytes) -> list[bytes]:
    """Item header lines of an envelope (every item in the corpus has a length)."""
    lines = []
    rest = raw.split(b"\n", 1)[1]
    while rest.strip():
        header_line, rest = rest.split(b"\n", 1)
        length = json.loads(header_line)["length"]
        lines.append(header_line)
        rest = rest[length + 1 :]
    return lines


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\x00\xffgarbage", {"X-Sentry-Auth": AUTH}, 400),
        (b'{}\n{"type":"event","length":2}\n{}\n', {}, 401),
        (b"not gzip at all", {"X-Sentry-Auth": AUTH, "Content-Encoding": "gzip"}, 400),
        (zlib.compress(b"x" * (300 * 1024 * 1024), 9),
         {"X-Sentry-Auth": AUTH, "Content-Encoding": "deflate"}, 413),
    ],
    ids=["garbage", "no-auth", "bad-compression", "zip-bomb"],
)  # fmt: skip
async def test_bad_input_gets_json_4xx(
    chain: LocalChain, body: bytes, headers: dict[str, str], status: int
) -> None:
    got, answer = post(f"{chain.pop.url}/api/42/envelope/", body, headers)
    assert got == status
    assert isinstance(answer.get("detail"), str) and answer["detail"]
    assert "Traceback" not in answer["detail"]


@pytest.mark.e2e
async def test_unknown_key_is_queued_then_rejected(chain: LocalChain) -> None:
    # As Relay: a key whose config is not known yet is accepted and queued; once the
    # configserver has answered "unknown", the same key is rejected at once.
    body = b'{}\n{"type":"event","length":2}\n{}\n'
    headers = {"X-Sentry-Auth": AUTH.replace(DEMO_PUBLIC_KEY, "f" * 32)}
    got, _ = post(f"{chain.pop.url}/api/42/envelope/", body, headers)
    assert got == 200
    for _ in range(100):
        got, answer = post(f"{chain.pop.url}/api/42/envelope/", body, headers)
        if got == 403:
            break
        await asyncio.sleep(0.05)
    assert got == 403, answer
    assert answer["detail"]


@pytest.mark.e2e
async def test_wrong_project_and_oversize_store(chain: LocalChain) -> None:
    event = msgspec.json.encode({"message": "x"})
    got, answer = post(f"{chain.pop.url}/api/43/store/", event, {"X-Sentry-Auth": AUTH})
    assert got == 403, answer
    big = msgspec.json.encode({"message": "x" * (2 * 1024 * 1024)})
    got, answer = post(f"{chain.pop.url}/api/42/store/", big, {"X-Sentry-Auth": AUTH})
    assert got == 413, answer
    assert answer["detail"]


@pytest.mark.e2e
async def test_store_endpoint_reaches_kafka(chain: LocalChain) -> None:
    event_id = uuid.uuid4().hex
    body = msgspec.json.encode({"event_id": event_id, "message": "curl", "level": "error"})
    got, answer = post(f"{chain.pop.url}/api/42/store/", body,
                       {"X-Sentry-Auth": AUTH, "Content-Type": "application/json"})  # fmt: skip
    assert got == 200
    assert answer == {"id": event_id}
    events = await collect(
        chain.kafka_bootstrap, "ingest-events", lambda ms: bool(by_event_id(ms, event_id))
    )
    payload = json.loads(by_event_id(events, event_id)[0]["payload"])
    assert payload["logentry"]["formatted"] == "curl"
