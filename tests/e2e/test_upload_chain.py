"""Tier 3: large attachments uploaded out of band, POP -> processing -> objectstore -> Kafka.

A chain of its own: the processing relay stores uploads in a dev objectstore (a real HTTP
server process), and the configserver's global config turns uploads on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml

from relay.dev.chain import DEMO_PROJECT_ID, DEMO_PUBLIC_KEY, LocalChain
from relay.dev.services import Service
from relay.protocol.encoding import zstd_decompress
from tests.kafka_utils import by_event_id, collect
from tests.workers import wait_until

HERE = Path(__file__).parent
REPO = HERE.parents[1]
INLINE_LIMIT = 64
ATTACHMENT_REF = "application/vnd.sentry.attachment-ref+json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def objectstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path_factory.mktemp("objectstore") / "objectstore.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.dev.objectstore", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            break
        except OSError as exc:
            # Any HTTP answer (even 404) means it listens.
            if isinstance(exc, urllib.error.HTTPError):
                break
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def upload_chain(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: Service,
    kafka_server: Service,
    objectstore: str,
) -> Iterator[LocalChain]:
    workdir = tmp_path_factory.mktemp("upload-chain")
    projects = workdir / "projects"
    projects.mkdir()
    project = yaml.safe_load((REPO / "configs" / "projects" / "42.yml").read_text())
    project["config"]["features"] = ["projects:relay-minidump-uploads"]
    (projects / "42.yml").write_text(yaml.safe_dump(project))
    (projects / "global.yml").write_text(yaml.safe_dump({"options": {
        "relay.endpoint-fetch-config.enabled": True,
        "relay.attachment-inline.limit": INLINE_LIMIT,
    }}))  # fmt: skip
    chain = LocalChain(
        workdir, projects_dir=projects, log_level="debug",
        processing_config={"processing": {"objectstore": {"objectstore_url": objectstore}}},
    )  # fmt: skip
    chain.start(redis=redis_server, kafka=kafka_server)
    # The endpoints decide on uploads only once the global config (which enables them) is
    # in: a relay that is ready may still be fetching it, and then inlines everything.
    _wait_for_global_config(chain)
    yield chain
    chain.stop()


def _wait_for_global_config(chain: LocalChain) -> None:
    # The whole log, not its tail: at debug level the line scrolls out of a tail quickly.
    logs = [relay.config_dir / "relay.log" for relay in (chain.pop, chain.processing)]
    wait_until(
        lambda: all(
            log.exists() and "received global config from upstream" in log.read_text()
            for log in logs
        ),
        timeout=30.0,
    )


async def _stored(objectstore: str, key: str) -> bytes:
    url = f"{objectstore}/v1/objects/attachments/org=1;project={DEMO_PROJECT_ID}/{key}"
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url) as response,
    ):
        assert response.status == 200, await response.text()
        body = await response.read()
        if response.headers.get("Content-Encoding") == "zstd":
            body = zstd_decompress(body, 1 << 30)
        return body


async def _attachments_of(chain: LocalChain, event_id: str) -> dict[str, Any]:
    messages = await collect(
        chain.kafka_bootstrap, "ingest-attachments",
        lambda ms: any(m.get("type") == "event" for m in by_event_id(ms, event_id)),
    )  # fmt: skip
    [event] = [m for m in by_event_id(messages, event_id) if m.get("type") == "event"]
    return event


@pytest.mark.e2e
async def test_minidump_and_large_attachment_are_uploaded(
    upload_chain: LocalChain, objectstore: str
) -> None:
    dump = b"MDMP" + bytes(range(256)) * 40
    log = b"a log line\n" * 50
    small = b"tiny"
    form = aiohttp.FormData()
    form.add_field("upload_file_minidump", dump, filename="crash.dmp")
    form.add_field("logs", log, filename="app.log", content_type="text/plain")
    form.add_field("small", small, filename="small.txt")
    url = f"{upload_chain.pop.url}/api/{DEMO_PROJECT_ID}/minidump/?sentry_key={DEMO_PUBLIC_KEY}"
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as response:
        assert response.status == 200, await response.text()
        event_id = uuid.UUID((await response.text()).strip()).hex

    message = await _attachments_of(upload_chain, event_id)
    by_name = {a["name"]: a for a in message["attachments"]}
    assert by_name["crash.dmp"]["attachment_type"] == "event.minidump"
    assert by_name["crash.dmp"]["size"] == len(dump)
    assert by_name["crash.dmp"]["content_type"] == "application/x-dmp"
    assert await _stored(objectstore, by_name["crash.dmp"]["stored_id"]) == dump
    assert by_name["app.log"]["size"] == len(log)
    assert by_name["app.log"]["content_type"] == "text/plain"
    assert await _stored(objectstore, by_name["app.log"]["stored_id"]) == log
    # Under the inline limit: through Kafka as before.
    assert "stored_id" not in by_name["small.txt"]
    payload = msgspec.json.decode(message["payload"])
    assert payload["sdk"]["name"] == "minidump.upload"
    assert payload["exception"]["values"][0]["mechanism"]["type"] == "minidump"


@pytest.mark.e2e
async def test_tus_upload_then_placeholder_in_an_envelope(
    upload_chain: LocalChain, objectstore: str
) -> None:
    data = b"screenshot bytes " * 100
    base = f"{upload_chain.pop.url}/api/{DEMO_PROJECT_ID}/upload/"
    auth = f"sentry_key={DEMO_PUBLIC_KEY}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}?{auth}",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))},
            skip_auto_headers=["Content-Type"],
        ) as created:
            assert created.status == 201, await created.text()
            assert created.headers["Tus-Resumable"] == "1.0.0"
            location = created.headers["Location"]
        async with session.patch(
            f"{upload_chain.pop.url}{location}&{auth}",
            data=data,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        ) as patched:
            assert patched.status == 204, await patched.text()
            final = patched.headers["Location"]
            assert patched.headers["Upload-Offset"] == str(len(data))

        event_id = uuid.uuid4().hex
        placeholder = msgspec.json.encode({"location": final, "content_type": "image/png"})
        forged = msgspec.json.encode(
            {"location": final.replace("upload_length=", "upload_length=9")}
        )
        items: list[tuple[dict[str, Any], bytes]] = [
            ({"type": "event"}, msgspec.json.encode({"message": "with an uploaded file"})),
            ({"type": "attachment", "filename": "shot.png", "content_type": ATTACHMENT_REF,
              "attachment_length": len(data)}, placeholder),
            ({"type": "attachment", "filename": "forged.png", "content_type": ATTACHMENT_REF,
              "attachment_length": len(data)}, forged),
        ]  # fmt: skip
        body = msgspec.json.encode({"event_id": event_id}) + b"\n"
        for headers, payload in items:
            body += msgspec.json.encode({**headers, "length": len(payload)}) + b"\n"
            body += payload + b"\n"
        async with session.post(
            f"{upload_chain.pop.url}/api/{DEMO_PROJECT_ID}/envelope/?{auth}", data=body
        ) as sent:
            assert sent.status == 200, await sent.text()

    message = await _attachments_of(upload_chain, event_id)
    [attachment] = message["attachments"]  # the forged placeholder is dropped
    assert attachment["name"] == "shot.png"
    assert attachment["size"] == len(data)
    assert attachment["content_type"] == "image/png"
    assert await _stored(objectstore, attachment["stored_id"]) == data
