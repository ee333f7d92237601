"""Tier 2: every SDK-facing endpoint of a POP relay, over HTTP, against a recording upstream.

The relay and its fake upstream (projectconfigs + envelope sink + a catch-all for forwarded
requests) run on their own event loop in a background thread, so that the tests, including the
hypothesis property tests, can be plain synchronous functions issuing real HTTP requests.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.config import config_from_dict
from relay.errors import RelayError
from relay.protocol.encoding import zstd_decompress
from relay.protocol.envelope import Envelope, parse_envelope
from relay.protocol.keys import generate_credentials
from relay.server.app import RelayApp
from relay.server.endpoints.common import parse_request_envelope
from tests.paths import CORPUS

#: The corpus was recorded with this key (see shared/corpus/README.md).
KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
PROJECT = 42
QUERY = f"?sentry_key={KEY}"
#: The envelope size limit of the relay under test: small enough for a quick gzip bomb.
MAX_ENVELOPE = 20 * 1024 * 1024


class Upstream:
    """A fake upstream: serves the project config, records envelopes and forwarded requests."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.forwarded: list[tuple[str, str, dict[str, str], bytes]] = []

    def app(self) -> web.Application:
        async def configs(request: web.Request) -> web.Response:
            query = await request.json()
            keys = query["publicKeys"]
            state = {
                "projectId": PROJECT, "organizationId": 1,
                "publicKeys": [{"publicKey": KEY, "isEnabled": True, "numericId": 7}],
                "config": {
                    "allowedDomains": ["*.allowed.com"],
                    "features": ["organizations:ourlogs-ingestion"],
                },
            }  # fmt: skip
            disabled = {"disabled": True}
            answer: dict[str, Any] = {"configs": {k: state if k == KEY else disabled for k in keys}}
            if query.get("global"):
                # As Sentry does: a relay waits for the global config before it forwards.
                answer["global"] = {}
            return web.json_response(answer)

        async def envelope(request: web.Request) -> web.Response:
            body = zstd_decompress(await request.read(), 2**30)
            self.envelopes.append(parse_envelope(body))
            return web.json_response({})

        async def other(request: web.Request) -> web.Response:
            body = await request.read()
            self.forwarded.append((request.method, request.path_qs, dict(request.headers), body))
            return web.Response(body=b"upstream:" + body, headers={"X-Upstream": "yes"})

        async def challenge(request: web.Request) -> web.Response:
            body = await request.json()
            return web.json_response({"relay_id": body["relay_id"], "token": "t"})

        async def response(request: web.Request) -> web.Response:
            body = await request.json()
            return web.json_response({"relay_id": body["relay_id"]})

        app = web.Application(client_max_size=2**30)
        app.add_routes([
            web.post("/api/0/relays/register/challenge/", challenge),
            web.post("/api/0/relays/register/response/", response),
            web.post("/api/0/relays/projectconfigs/", configs),
            web.post("/api/{project}/envelope/", envelope),
            web.route("*", "/{tail:.*}", other),
        ])  # fmt: skip
        return app


class Stack:
    """Relay + upstream on a private event loop thread."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.upstream = Upstream()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.upstream.app(), auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        up_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = config_from_dict({
            "relay": {
                "mode": "managed", "port": 0, "upstream": f"http://127.0.0.1:{up_port}/",
                **self.options.get("relay", {}),
            },
            "limits": {"max_envelope_size": MAX_ENVELOPE, **self.options.get("limits", {})},
            "http": self.options.get("http", {}),
        })  # fmt: skip
        self.relay = RelayApp(config, generate_credentials())
        await self.relay.start()
        self.port = self.relay.ports[0]

    def stop(self) -> None:
        async def _stop() -> None:
            await self.relay.stop()
            await self._runner.cleanup()

        self.call(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            all_headers = {"Content-Length": str(len(body)), **(headers or {})}
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def wait_envelopes(self, count: int) -> list[Envelope]:
        for _ in range(200):
            if len(self.upstream.envelopes) >= count:
                break
            threading.Event().wait(0.02)
        got = self.upstream.envelopes[:count]
        del self.upstream.envelopes[:count]
        return got


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack({})
    s.start()
    yield s
    s.stop()


def _json(body: bytes) -> Any:
    return json.loads(body)


# --- store ---------------------------------------------------------------------------------------


def test_store_post_answers_id_and_forwards(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    status, _, body = stack.request(
        "POST", f"/api/{PROJECT}/store/{QUERY}", json.dumps({"event_id": event_id}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert (status, _json(body)) == (200, {"id": event_id})
    [env] = stack.wait_envelopes(1)
    assert env.event_id == event_id and env.items[0].type == "event"


@pytest.mark.parametrize(
    "data",
    [
        '{"message": "im in ur query params"}',
        "eF6rVspNLS5OTE9VslJQysxVyMxTKC1SKCxNLapUKEgsSswtVqoFAOKyDI4=",
    ],
)
def test_store_get_pixel(stack: Stack, data: str) -> None:
    from urllib.parse import quote

    status, headers, body = stack.request(
        "GET", f"/api/{PROJECT}/store/{QUERY}&sentry_data={quote(data)}"
    )
    assert status == 200 and headers["content-type"] == "image/gif"
    assert body.startswith(b"GIF89a")
    [env] = stack.wait_envelopes(1)
    event = json.loads(env.items[0].payload)
    assert (event.get("logentry") or {}).get("formatted", event.get("message")) == (
        "im in ur query params"
    )


def test_store_legacy_python_nan(stack: Stack) -> None:
    auth = f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=raven-python/6.0"
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/store/", b'{"extra": {"x": NaN, "y": -Infinity}}',
        {"X-Sentry-Auth": auth},
    )  # fmt: skip
    assert status == 200
    [env] = stack.wait_envelopes(1)
    assert json.loads(env.items[0].payload)["extra"] == {"x": 0, "y": 0}


def test_duplicate_slashes_are_folded(stack: Stack) -> None:
    status, _, _ = stack.request("POST", f"//api/{PROJECT}//store//{QUERY}", b'{"a": 1}')
    assert status == 200
    assert len(stack.wait_envelopes(1)) == 1


def test_store_rejections_are_json(stack: Stack) -> None:
    cases = [
        (f"/api/{PROJECT}/store/", b"{}", 401),
        (f"/api/{PROJECT}/store/{QUERY}", b"[1]", 400),
        (f"/api/{PROJECT}/store/{QUERY}", b"", 400),
        (f"/api/{PROJECT}/store/?sentry_key=abc", b"{}", 400),
        (f"/api/{PROJECT}/store/{QUERY}&sentry_version=8", b"{}", 400),
    ]
    for path, body, expected in cases:
        status, _, answer = stack.request("POST", path, body)
        assert status == expected, (path, body, answer)
        assert "detail" in _json(answer)
    both = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}"}
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/store/{QUERY}", b"{}", both)
    assert (status, _json(answer)["detail"]) == (401, "multiple authorization payloads detected")


# --- envelope ------------------------------------------------------------------------------------


def test_envelope_empty_is_ok_and_dropped(stack: Stack) -> None:
    status, _, body = stack.request("POST", f"/api/{PROJECT}/envelope/{QUERY}", b"{}\n")
    assert (status, _json(body)) == (200, {})
    assert stack.wait_envelopes(0) == []


def test_envelope_dsn_auth(stack: Stack) -> None:
    dsn = f"http://{KEY}@relay.invalid/{PROJECT}"
    body = json.dumps({"dsn": dsn}).encode() + b'\n{"type":"event"}\n{}\n'
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/envelope/", body)
    assert status == 200 and "id" in _json(answer)
    stack.wait_envelopes(1)
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/envelope/", b'{}\n{"type":"x"}\n')
    assert (status, _json(answer)["detail"]) == (401, "bad envelope authentication header")


def test_envelope_unknown_items_are_forwarded(stack: Stack) -> None:
    body = b'{}\n{"type":"brand_new_thing"}\nsomething\n'
    status, _, _ = stack.request("POST", f"/api/{PROJECT}/envelope/{QUERY}", body)
    assert status == 200
    [env] = stack.wait_envelopes(1)
    assert [item.type for item in env.items] == ["brand_new_thing"]


def test_envelope_internal_items_are_refused(stack: Stack) -> None:
    body = b'{}\n{"type":"integration","content_type":"application/json"}\n{}\n'
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/envelope/{QUERY}", body)
    assert (status, _json(answer)["detail"]) == (400, "envelope contains internal items")


def test_item_too_large_rejects_envelope(stack: Stack) -> None:
    body = b'{}\n{"type":"check_in"}\n' + b'{"x":"' + b"a" * 200_000 + b'"}\n'
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/envelope/{QUERY}", body)
    assert status == 413
    assert _json(answer)["detail"].startswith("envelope exceeded size limits for type 'check_in'")


def test_gzip_bomb_is_refused_after_reading_the_limit(stack: Stack) -> None:
    # 10 GiB of zeros as a multi-member gzip stream: one 64 MiB member, repeated.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    member = b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()
    bomb = member * 160
    assert len(bomb) < MAX_ENVELOPE
    for path in (f"/api/{PROJECT}/envelope/", f"/api/{PROJECT}/store/", "/api/0/anything/"):
        status, _, answer = stack.request("POST", path + QUERY, bomb, {"Content-Encoding": "gzip"})
        assert status == 413, path
        assert "detail" in _json(answer)
    # A declared length over the limit is refused before reading.
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.putrequest("POST", f"/api/{PROJECT}/envelope/{QUERY}")
    conn.putheader("Content-Length", str(10 * 1024**3))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


# --- browser reports -----------------------------------------------------------------------------


def test_security_report_media_types(stack: Stack) -> None:
    report = (
        b'{"csp-report": {"document-uri": "https://x.allowed.com/", '
        b'"violated-directive": "script-src", "blocked-uri": "https://evil.com/x.js"}}'
    )
    for content_type in ("application/csp-report", "application/json"):
        status, _, _ = stack.request(
            "POST", f"/api/{PROJECT}/security/{QUERY}&sentry_release=1.0", report,
            {"Content-Type": content_type},
        )  # fmt: skip
        assert status == 200
        [env] = stack.wait_envelopes(1)
        # The POP turns the raw report into a CSP event, as Relay does.
        assert env.items[0].type == "security"
        event = json.loads(env.items[0].payload)
        assert event["type"] == "csp" and event["release"] == "1.0"
        assert event["csp"]["effective_directive"] == "script-src"
    batch = b"[" + report + b"," + report + b"]"
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/csp-report/{QUERY}", batch,
        {"Content-Type": "application/reports+json"},
    )  # fmt: skip
    assert status == 200
    assert len(stack.wait_envelopes(2)) == 2
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/security/{QUERY}", report, {"Content-Type": "text/plain"}
    )
    assert status == 415


def test_origin_must_be_allowed(stack: Stack) -> None:
    path = f"/api/{PROJECT}/store/{QUERY}"
    status, _, _ = stack.request("POST", path, b"{}", {"Origin": "https://www.allowed.com"})
    assert status == 200
    stack.wait_envelopes(1)
    status, _, answer = stack.request("POST", path, b"{}", {"Referer": "https://evil.com/x"})
    assert status == 403 and "detail" in _json(answer)


def test_nel(stack: Stack) -> None:
    report = {
        "age": 1000, "type": "network-error", "url": "https://example.com/index.html",
        "user_agent": "Mozilla/5.0",
        "body": {
            "elapsed_time": 37, "method": "GET", "phase": "application", "protocol": "http/1.1",
            "referrer": "https://example.com/", "sampling_fraction": 1.0,
            "server_ip": "123.123.123.123", "status_code": 500, "type": "http.error",
        },
    }  # fmt: skip
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/nel/{QUERY}", json.dumps([report]).encode(),
        {"Content-Type": "application/reports+json"},
    )  # fmt: skip
    assert status == 200
    [env] = stack.wait_envelopes(1)
    # The POP turns NEL reports into logs (projects with log ingestion), as Relay does.
    assert [item.type for item in env.items] == ["log"]
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/nel/{QUERY}", b"[]", {"Content-Type": "x/y"}
    )
    assert status == 415


# --- crash uploads -------------------------------------------------------------------------------


def _form(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_minidump_multipart_raw_and_compressed(stack: Stack) -> None:
    event_id = uuid.uuid4()
    body, headers = _form(
        ("upload_file_minidump", "minidump.dmp.gz", gzip.compress(b"MDMP dump")),
        ("attachment1", "log.txt", b"log"),
        ("sentry[event_id]", None, event_id.hex.encode()),
    )
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/minidump/{QUERY}", body, headers)
    assert (status, answer.decode()) == (200, str(event_id))
    [env] = stack.wait_envelopes(1)
    dump = next(i for i in env.items if i.attachment_type == "event.minidump")
    assert (dump.payload, dump.filename) == (b"MDMP dump", "minidump.dmp")
    # Form fields become the event that goes with the minidump.
    assert {i.type for i in env.items} == {"attachment", "event"}

    status, _, answer = stack.request(
        "POST",
        f"/api/{PROJECT}/minidump{QUERY}",
        b"MDMP raw",
        {"Content-Type": "application/x-dmp"},
    )
    assert status == 200 and uuid.UUID(answer.decode())
    stack.wait_envelopes(1)

    body, headers = _form(("upload_file_minidump", "m.dmp", b"MZ not a dump"))
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/minidump/{QUERY}", body, headers)
    assert (status, _json(answer)["detail"]) == (400, "invalid minidump")
    body, headers = _form(("other", "m.dmp", b"MDMP"))
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/minidump/{QUERY}", body, headers)
    assert (status, _json(answer)["detail"]) == (400, "missing minidump")


def test_attachments_endpoint(stack: Stack) -> None:
    event_id = uuid.uuid4().hex
    body, headers = _form(("a", "a.txt", b"hello"), ("b", "b.txt", b"world"))
    path = f"/api/{PROJECT}/events/{event_id}/attachments/{QUERY}"
    status, _, answer = stack.request("POST", path, body, headers)
    assert (status, answer) == (201, b"")
    [env] = stack.wait_envelopes(1)
    assert env.event_id == event_id
    assert [(i.filename, i.payload) for i in env.items] == [
        ("a.txt", b"hello"),
        ("b.txt", b"world"),
    ]


def test_unreal_endpoint(stack: Stack) -> None:
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/unreal/{KEY}/?UserID=u1", b"crash")
    assert status == 200
    [env] = stack.wait_envelopes(1)
    assert env.event_id == uuid.UUID(answer.decode()).hex
    assert env.headers["unreal_user_id"] == "u1"
    assert env.items[0].type == "unreal_report"


@pytest.mark.parametrize(
    "path",
    [f"cron/my-job/{KEY}", f"cron/my-job/{KEY}/", f"cron/my-job{QUERY}", f"cron/my-job/{QUERY}"],
)
def test_cron_route_forms(stack: Stack, path: str) -> None:
    sep = "&" if "?" in path else "?"
    status, _, _ = stack.request("GET", f"/api/{PROJECT}/{path}{sep}status=ok&environment=prod")
    assert status == 202
    [env] = stack.wait_envelopes(1)
    check_in = json.loads(env.items[0].payload)
    assert check_in["monitor_slug"] == "my-job" and check_in["status"] == "ok"
    assert check_in["environment"] == "prod"


def test_cron_json_body(stack: Stack) -> None:
    status, _, _ = stack.request(
        "POST", f"/api/{PROJECT}/cron/slug/{QUERY}", b'{"status": "in_progress", "duration": 2}',
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 202
    [env] = stack.wait_envelopes(1)
    assert json.loads(env.items[0].payload)["duration"] == 2


# --- OTLP ----------------------------------------------------------------------------------------


def test_otlp_json_and_protobuf(stack: Stack) -> None:
    for name in ("traces", "logs/"):
        status, headers, answer = stack.request(
            "POST", f"/api/{PROJECT}/integration/otlp/v1/{name}{QUERY}", b'{"resourceSpans":[]}',
            {"Content-Type": "application/json"},
        )  # fmt: skip
        assert (status, answer) == (200, b"{}")
        status, headers, answer = stack.request(
            "POST", f"/api/{PROJECT}/integration/otlp/v1/{name}{QUERY}", b"\x0a\x00",
            {"Content-Type": "application/x-protobuf"},
        )  # fmt: skip
        assert (status, headers["content-type"], answer) == (200, "application/x-protobuf", b"")
    envs = stack.wait_envelopes(4)
    assert {e.items[0].headers["content_type"] for e in envs} == {
        "application/vnd.sentry.integration.otel.spans+json",
        "application/vnd.sentry.integration.otel.spans+protobuf",
        "application/vnd.sentry.integration.otel.logs+json",
        "application/vnd.sentry.integration.otel.logs+protobuf",
    }
    status, _, answer = stack.request(
        "POST", f"/api/{PROJECT}/integration/otlp/v1/traces", b"{}",
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 401 and _json(answer)["code"] == 16
    status, _, answer = stack.request(
        "POST", f"/api/{PROJECT}/integration/otlp/v1/traces{QUERY}", b"{}",
        {"Content-Type": "text/plain"},
    )  # fmt: skip
    assert status == 415


# --- CORS and headers ----------------------------------------------------------------------------


def test_cors_preflight_and_headers(stack: Stack) -> None:
    status, headers, _ = stack.request(
        "OPTIONS", f"/api/{PROJECT}/store/",
        headers={"Origin": "https://a.allowed.com", "Access-Control-Request-Method": "POST"},
    )  # fmt: skip
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    status, headers, _ = stack.request(
        "POST", f"/api/{PROJECT}/store/{QUERY}", b"{}", {"Origin": "https://a.allowed.com"}
    )
    assert "retry-after" in headers["access-control-expose-headers"]
    assert headers["cross-origin-resource-policy"] == "cross-origin"
    stack.wait_envelopes(1)


# --- forwarding ----------------------------------------------------------------------------------


def test_forward_other_api_paths(stack: Stack) -> None:
    status, headers, body = stack.request(
        "POST", "/api/0/projects/a/b/releases/1.0/files/?x=1", gzip.compress(b"file"),
        {"Content-Encoding": "gzip", "X-Forwarded-For": "1.2.3.4"},
    )  # fmt: skip
    assert (status, body, headers["x-upstream"]) == (200, b"upstream:file", "yes")
    method, path, sent, data = stack.upstream.forwarded[-1]
    assert (method, path, data) == ("POST", "/api/0/projects/a/b/releases/1.0/files/?x=1", b"file")
    assert sent["X-Forwarded-For"].startswith("1.2.3.4, ")
    assert "Content-Encoding" not in sent
    for path in ("/", "/foo", "/api/"):
        assert stack.request("GET", path)[0] == 404
    assert stack.request("GET", f"/api/{PROJECT}/envelope/")[0] == 405


def test_forward_disabled() -> None:
    s = Stack({"http": {"forward": False}})
    s.start()
    try:
        assert s.request("GET", "/api/0/whatever/")[0] == 404
    finally:
        s.stop()


# --- the shared corpus -------------------------------------------------------------------------


def _wire_bodies() -> list[str]:
    wire = CORPUS / "wire"
    return sorted(p.stem.split(".")[0] for p in wire.glob("*.meta.json")) if wire.exists() else []


@pytest.mark.parametrize("seq", _wire_bodies())
def test_corpus_wire_bodies_are_accepted(stack: Stack, seq: str) -> None:
    meta = json.loads((CORPUS / "wire" / f"{seq}.meta.json").read_text())
    body = (CORPUS / "wire" / f"{seq}.body").read_bytes()
    headers = {k: v for k, v in meta["headers"] if k.lower() not in ("host", "content-length")}
    path = meta["path"] + (f"?{meta['query']}" if meta["query"] else "")
    status, _, answer = stack.request(meta["method"], path, body, headers)
    assert status == 200, answer
    envelope = parse_envelope(gzip.decompress(body) if "gzip" in str(headers) else body)
    assert _json(answer) == ({"id": envelope.event_id} if envelope.event_id else {})
    stack.upstream.envelopes.clear()


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.glob("*.envelope")) if CORPUS.exists() else []
)
def test_corpus_envelopes_are_accepted(stack: Stack, name: str) -> None:
    body = (CORPUS / name).read_bytes()
    auth = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}
    status, _, answer = stack.request("POST", f"/api/{PROJECT}/envelope/", body, auth)
    assert status == 200, answer
    stack.upstream.envelopes.clear()


# --- property tests ------------------------------------------------------------------------------

_headers = st.dictionaries(
    st.sampled_from(
        ["type", "length", "event_id", "content_type", "attachment_type", "item_count"]
    ),
    st.one_of(st.none(), st.integers(-5, 2**40), st.text(max_size=40), st.booleans()),
    max_size=4,
)
_items = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["event", "attachment", "session", "check_in", "log", "span", "x"]),
            st.text(max_size=10),
        ),
        _headers,
        st.binary(max_size=200),
    ),
    max_size=5,
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Envelopes, mostly well-formed, then mutated (cut, flipped bytes, junk inserted)."""
    headers = draw(st.dictionaries(
        st.sampled_from(["event_id", "dsn", "sent_at", "trace"]),
        st.one_of(st.just(uuid.uuid4().hex), st.text(max_size=30), st.integers()),
        max_size=3,
    ))  # fmt: skip
    out = json.dumps(headers).encode() + b"\n"
    for item_type, item_headers, payload in draw(_items):
        header = {**item_headers, "type": item_type}
        if draw(st.booleans()):
            header["length"] = len(payload)
        out += json.dumps(header).encode() + b"\n" + payload + b"\n"
    mutation = draw(st.sampled_from(["none", "cut", "flip", "insert"]))
    if mutation == "cut" and out:
        out = out[: draw(st.integers(0, len(out)))]
    elif mutation == "flip" and out:
        pos = draw(st.integers(0, len(out) - 1))
        out = out[:pos] + bytes([out[pos] ^ draw(st.integers(1, 255))]) + out[pos + 1 :]
    elif mutation == "insert":
        pos = draw(st.integers(0, len(out)))
        out = out[:pos] + draw(st.binary(max_size=20)) + out[pos:]
    return out


@given(envelopes())
@settings(max_examples=300, deadline=None)
def test_parser_never_crashes(data: bytes) -> None:
    try:
        envelope = parse_request_envelope(data)
    except RelayError as exc:
        assert 400 <= exc.status < 500
    else:
        again = parse_envelope(envelope.serialize())
        assert [(i.type, i.payload) for i in again.items] == [
            (i.type, i.payload) for i in envelope.items
        ]


_encodings = st.sampled_from(["", "gzip", "deflate", "br", "zstd", "identity", "bogus", "gzip, br"])
_paths = st.sampled_from([
    f"/api/{PROJECT}/envelope/", f"/api/{PROJECT}/store/", f"/api/{PROJECT}/minidump/",
    f"/api/{PROJECT}/security/", f"/api/{PROJECT}/nel/",
    f"/api/{PROJECT}/events/{'a' * 32}/attachments/",
    f"/api/{PROJECT}/unreal/{KEY}/", f"/api/{PROJECT}/cron/x/", f"/api/{PROJECT}/store//",
])  # fmt: skip
_content_types = st.sampled_from([
    None, "application/json", "application/x-sentry-envelope", "application/x-dmp",
    "multipart/form-data; boundary=b", "multipart/form-data", "application/csp-report",
    "application/reports+json", "text/plain", ";;", "a/b+",
])  # fmt: skip


def _encode(body: bytes, encoding: str, valid: bool) -> bytes:
    import brotli

    from relay.protocol.encoding import zstd_compress

    if not valid:
        return body
    for enc in reversed([e.strip() for e in encoding.split(",")]):
        if enc == "gzip":
            body = gzip.compress(body)
        elif enc == "deflate":
            body = zlib.compress(body)
        elif enc == "br":
            body = brotli.compress(body)
        elif enc == "zstd":
            body = zstd_compress(body)
    return body


@given(
    path=_paths,
    body=st.one_of(envelopes(), st.binary(max_size=300)),
    encoding=_encodings,
    valid_encoding=st.booleans(),
    content_type=_content_types,
    auth=st.sampled_from(["query", "header", "none", "both", "bad", "v8"]),
    origin=st.sampled_from([None, "https://x.allowed.com", "https://evil.com", "null"]),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_endpoints_answer_every_rejection_with_4xx_json(
    stack: Stack,
    path: str,
    body: bytes,
    encoding: str,
    valid_encoding: bool,
    content_type: str | None,
    auth: str,
    origin: str | None,
) -> None:
    headers: dict[str, str] = {}
    query = ""
    if auth in ("query", "both"):
        query = QUERY
    if auth in ("header", "both"):
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={KEY}, sentry_version=7"
    if auth == "bad":
        headers["X-Sentry-Auth"] = "Sentry sentry_version=x"
    if auth == "v8":
        query = QUERY + "&sentry_version=8"
    if encoding:
        headers["Content-Encoding"] = encoding
    if content_type is not None:
        headers["Content-Type"] = content_type
    if origin is not None:
        headers["Origin"] = origin
    status, resp_headers, answer = stack.request(
        "POST", path + query, _encode(body, encoding, valid_encoding), headers
    )
    assert status < 500, (status, answer)
    if status >= 400 and status != 415:
        assert 400 <= status < 500
        detail = json.loads(answer)
        assert isinstance(detail.get("detail") or detail.get("message"), str)
    assert resp_headers["cross-origin-resource-policy"] == "cross-origin"
    stack.upstream.envelopes.clear()
