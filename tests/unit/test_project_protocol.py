"""Project configs, pending queues, configserver files and registration, without I/O."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from relay.config import config_from_dict
from relay.errors import AuthError, Forbidden, ServiceUnavailable
from relay.protocol.envelope import Envelope, Item
from relay.protocol.keys import generate_credentials
from relay.protocol.project_config import (
    ProjectConfigsRequest,
    ProjectState,
    PublicKeyConfig,
    decode_project_state,
    describe_state_error,
    limited_config,
    outgoing_state,
)
from relay.server.backoff import RetryBackoff
from relay.server.configserver import ProjectFiles
from relay.server.ingest import Rejected, check_envelope
from relay.server.pending import PendingQueues
from relay.server.relay_api import Registrar
from relay.server.relays import RelayCache
from relay.server.request_meta import RequestMeta

KEY = "a" * 32


def state(**config: object) -> ProjectState:
    return ProjectState(
        project_id=1, rev="r", public_keys=[PublicKeyConfig(KEY)], config=dict(config)
    )


def test_limited_config_keeps_only_what_external_relays_get() -> None:
    full = {"allowedDomains": ["x.com"], "quotas": [{"id": "q"}], "features": ["a"],
            "trustedRelaySettings": {"verifySignature": "enabled"}}  # fmt: skip
    assert limited_config(full) == {
        "allowedDomains": ["x.com"], "trustedRelays": [], "piiConfig": None, "features": ["a"],
    }  # fmt: skip


def test_outgoing_state_full_and_limited_and_advertised_upstream() -> None:
    s = decode_project_state(
        json.dumps(
            {
                "projectId": 1,
                "publicKeys": [{"publicKey": KEY}],
                "config": {"quotas": []},
                "upstream": "https://up/",
            }
        ).encode()
    )
    assert "quotas" in outgoing_state(s, full=True, upstream=None)["config"]
    limited = outgoing_state(s, full=False, upstream="https://me/")
    assert "quotas" not in limited["config"]
    assert limited["upstream"] == "https://me/"
    # An upstream's advertised upstream is never passed on.
    assert "upstream" not in outgoing_state(s, full=True, upstream=None)


def test_request_skips_malformed_keys_and_mismatched_revisions() -> None:
    req = msgspec.json.decode(
        json.dumps({"publicKeys": [KEY, "deadbeef", 42, "b" * 32], "revisions": ["1"]}),
        type=ProjectConfigsRequest,
    )
    assert req.valid_keys() == [(KEY, None), ("b" * 32, None)]


def test_state_errors_read_like_relays() -> None:
    raw = json.dumps({"slug": 99}).encode()
    with pytest.raises(msgspec.ValidationError) as info:
        decode_project_state(raw)
    assert describe_state_error(info.value, raw) == "invalid type: integer `99`, expected a string"


def test_backoff_is_relays() -> None:
    backoff = RetryBackoff(2.0)
    assert [backoff.next_backoff() for _ in range(5)] == [0.0, 1.0, 1.5, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_backoff() == 0.0


def meta(**kwargs: object) -> RequestMeta:
    return RequestMeta(public_key=KEY, project_id=1, **kwargs)  # type: ignore[arg-type]


def test_signature_checks() -> None:
    config = config_from_dict({})
    pop = generate_credentials()
    s = state(trustedRelays=[pop.public_key], trustedRelaySettings={"verifySignature": "enabled"})
    env = Envelope(headers={}, items=[])
    with pytest.raises(Rejected) as missing:
        check_envelope(config, s, env, meta())
    assert missing.value.reason == "missing_signature"
    forged = generate_credentials().get_secret_key().sign(b"")
    with pytest.raises(Rejected) as invalid:
        check_envelope(config, s, env, meta(relay_signature=forged))
    assert invalid.value.reason == "invalid_signature"
    check_envelope(config, s, env, meta(relay_signature=pop.get_secret_key().sign(b"")))
    # Internal relays are trusted without a signature.
    check_envelope(config, s, env, meta(), trusted=True)


async def test_pending_queue_releases_in_order_and_expires() -> None:
    config = config_from_dict({})
    released: list[str] = []
    expired: list[str] = []

    async def release(env: Envelope, m: RequestMeta, s: ProjectState) -> None:
        released.append(str(env.event_id))

    queues = PendingQueues(config, release, lambda e, m: expired.append(str(e.event_id)),
                           budget_bytes=16384)  # fmt: skip
    for n in range(3):
        queues.push(Envelope(headers={"event_id": f"{n:032x}"}, items=[]), meta())
    other = RequestMeta(public_key="b" * 32, project_id=2)
    queues.push(Envelope(headers={"event_id": "f" * 32}, items=[]), other)
    queues.on_project_ready(KEY, state())
    await asyncio.sleep(0)
    assert released == [f"{n:032x}" for n in range(3)]
    assert queues.expire_older_than(-1) == 1
    assert expired == ["f" * 32]
    big = Envelope(headers={}, items=[Item.new("attachment", b"x" * 20000)])
    with pytest.raises(ServiceUnavailable):
        queues.push(big, meta())


def test_invalid_file_keeps_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "1.yml"
    path.write_text(f"projectId: 1\npublicKeys: [{{publicKey: {KEY}}}]\nslug: good\n")
    files = ProjectFiles(tmp_path)
    assert files.scan()[KEY].slug == "good"
    path.write_text(f"projectId: 1\npublicKeys: [{{publicKey: {KEY}}}]\nslug: 99\n")
    assert files.scan()[KEY].slug == "good"
    assert path in files.errors
    path.write_text("projectId: 1\npublicKeys: [{publicKey: nope}]\n")
    assert files.scan()[KEY].slug == "good"


def test_global_file_is_the_served_global_config(tmp_path: Path) -> None:
    (tmp_path / "1.yml").write_text(f"projectId: 1\npublicKeys: [{{publicKey: {KEY}}}]\n")
    files = ProjectFiles(tmp_path)
    assert files.scan().keys() == {KEY} and files.global_config == {}
    path = tmp_path / "global.yml"
    path.write_text("options: {relay.endpoint-fetch-config.enabled: true}\n")
    assert files.scan().keys() == {KEY}  # not a project
    assert files.global_config == {"options": {"relay.endpoint-fetch-config.enabled": True}}
    path.write_text("options: [1]\n")
    files.scan()
    assert path in files.errors
    assert files.global_config["options"] == {"relay.endpoint-fetch-config.enabled": True}
    path.unlink()
    files.scan()
    assert files.global_config == {}


async def test_registration_roundtrip_with_sentry_relay_signatures() -> None:
    from sentry_relay.auth import SecretKey

    relay = generate_credentials()
    config = config_from_dict({"auth": {"static_relays": {
        relay.id: {"public_key": relay.public_key, "internal": True}}}})  # fmt: skip
    relays = RelayCache(config, None)
    registrar = Registrar(config, relays)
    sk = SecretKey.parse(relay.secret_key)  # type: ignore[no-untyped-call]
    body = json.dumps({"relay_id": relay.id, "public_key": relay.public_key}).encode()
    challenge = json.loads(registrar.challenge(body, sk.sign(body), relay.id))
    assert challenge["relay_id"] == relay.id
    response = json.dumps({"relay_id": relay.id, "token": challenge["token"]}).encode()
    with pytest.raises(AuthError):
        registrar.response(response, generate_credentials().get_secret_key().sign(response),
                           relay.id)  # fmt: skip
    assert json.loads(registrar.response(response, sk.sign(response), relay.id)) == {
        "relay_id": relay.id
    }
    assert relays.registered[relay.id].internal
    stranger = generate_credentials()
    body = json.dumps({"relay_id": stranger.id, "public_key": stranger.public_key}).encode()
    with pytest.raises(Forbidden):
        registrar.challenge(body, stranger.get_secret_key().sign(body), stranger.id)
