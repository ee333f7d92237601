"""No secret or personal data ever reaches the logs, even at ``trace`` level.

A whole chain (configserver, processing relay, POP) runs at trace level with JSON logs;
it registers, fetches configs, forwards, drops and produces, with DSN keys, relay secret
keys, a client secret and planted personal data in the traffic. Then every line of every
log is searched for them. (A process-level test, in tests/unit only by name: it is the
check the issue asks for; it shares the session's Redis and broker.)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest

from relay.dev.chain import DEMO_PUBLIC_KEY, LocalChain
from relay.dev.services import Service

UNKNOWN_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CLIENT_SECRET = "plantedclientsecret0123456789"
PII = {
    "email": "planted.person@example.org",
    "password": "hunter2-planted-password",
    "card": "4111111111111111",
    "phone": "+41-79-555-12-34",
    "name": "Plantedfirstname Plantedlastname",
}


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _event(**extra: object) -> bytes:
    return msgspec.json.encode({
        "message": f"card {PII['card']} of {PII['name']}",
        "user": {"email": PII["email"], "username": PII["name"], "ip_address": "10.1.2.3"},
        "extra": {"password": PII["password"], "phone": PII["phone"]},
        "request": {"headers": {"Authorization": f"Bearer {CLIENT_SECRET}"}},
        **extra,
    })  # fmt: skip


@pytest.mark.e2e
def test_trace_logs_hold_no_secrets(
    tmp_path: Path,
    redis_server: Service,
    kafka_server: Service,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_LOG_FORMAT", "json")
    chain = LocalChain(tmp_path, log_level="trace")
    chain.start(redis=redis_server, kafka=kafka_server)
    dropped_id = uuid.uuid4().hex
    try:
        base = chain.pop.url
        auth = (
            f"Sentry sentry_key={DEMO_PUBLIC_KEY}, sentry_secret={CLIENT_SECRET}, "
            "sentry_version=7, sentry_client=leak-test/1.0"
        )
        dsn = f"http://{DEMO_PUBLIC_KEY}:{CLIENT_SECRET}@127.0.0.1/42"
        head = msgspec.json.encode({"event_id": uuid.uuid4().hex, "dsn": dsn})
        statuses = [
            _post(f"{base}/api/42/store/", _event(), {"X-Sentry-Auth": auth}),
            _post(
                f"{base}/api/42/envelope/?sentry_key={DEMO_PUBLIC_KEY}",
                head + b'\n{"type":"event"}\n' + _event() + b"\n",
                {"Content-Type": "application/x-sentry-envelope"},
            ),
            # Dropped at the POP (invalid JSON that quotes personal data): logged at debug.
            _post(
                f"{base}/api/42/envelope/?sentry_key={DEMO_PUBLIC_KEY}",
                msgspec.json.encode({"event_id": dropped_id})
                + b'\n{"type":"event"}\n{"email": "'
                + PII["email"].encode()
                + b'", \n',
                {},
            ),
            # An unknown key, a key in the path, a bad envelope, a bad auth header.
            _post(
                f"{base}/api/42/store/",
                _event(),
                {"X-Sentry-Auth": auth.replace(DEMO_PUBLIC_KEY, UNKNOWN_KEY)},
            ),
            _post(f"{base}/api/42/unreal/{UNKNOWN_KEY}/", b"\x00" + PII["email"].encode(), {}),
            _post(f"{base}/api/42/envelope/", PII["password"].encode(), {"X-Sentry-Auth": auth}),
            _post(f"{base}/api/42/store/", _event(), {"X-Sentry-Auth": f"Sentry {CLIENT_SECRET}"}),
        ]
        assert statuses[:3] == [200, 200, 200], statuses
        time.sleep(1.5)  # let forwarding, processing and outcomes happen
    finally:
        chain.stop()

    secrets = [DEMO_PUBLIC_KEY, UNKNOWN_KEY, CLIENT_SECRET, *PII.values()]
    for relay in chain.processes:
        assert relay.credentials is None or relay.credentials.secret_key
        if relay.credentials is not None:
            secrets.append(relay.credentials.secret_key)
    logs = {relay.name: (relay.config_dir / "relay.log").read_text() for relay in chain.processes}
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} logged {secret!r}"
    # The logs are not empty: the relays did log at trace level, as JSON.
    pop_lines = [json.loads(line) for line in logs["pop"].splitlines() if line.startswith("{")]
    assert any(entry["level"] == "debug" for entry in pop_lines)
    # And the dropped envelope can be traced by its event id.
    assert any(entry.get("event_id") == dropped_id for entry in pop_lines), logs["pop"][-3000:]
