"""Tier 3: signed hops. configserver <- processing <- POP2 <- POP1, all real processes.

POP2 is an *external* relay for the processing relay: it gets only the configs whose
``trustedRelays`` list its key, and its envelopes must carry its signature, since project
42 sets ``trustedRelaySettings.verifySignature``. Signatures are made with Sentry Relay's
own library (``sentry_relay``), so the checks are the ones a real Relay would meet.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.dev.chain import LocalChain
from relay.dev.services import Service
from relay.protocol.keys import Credentials, SecretKey, generate_credentials
from tests.kafka_utils import by_event_id, collect

TRUSTED_KEY = "7e57c0ffee0000000000000000000042"  # project 42: trusts POP2
UNTRUSTED_KEY = "7e57c0ffee0000000000000000000043"  # project 43: trusts nobody
PROJECTCONFIGS = "/api/0/relays/projectconfigs/?version=3"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def signed(creds: Credentials, payload: Any, *, key: Credentials | None = None,
           age: timedelta | None = None) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    """A signed relay request: ``creds``' id, signed with ``key``'s secret (default: own)."""
    from sentry_relay.auth import SecretKey as RelaySecretKey

    body = json.dumps(payload).encode()
    secret = (key or creds).secret_key
    if age is None:
        signature = RelaySecretKey.parse(secret).sign(body)  # type: ignore[no-untyped-call]
    else:
        signature = SecretKey.parse(secret).sign(body, datetime.now(UTC) - age)
    headers = {
        "Content-Type": "application/json",
        "X-Sentry-Relay-Id": creds.id,
        "X-Sentry-Relay-Signature": signature,
    }
    return body, headers


@pytest.fixture(scope="module")
def trust_chain(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Service, kafka_server: Service
) -> Iterator[LocalChain]:
    workdir: Path = tmp_path_factory.mktemp("trust-chain")
    pop2 = generate_credentials()
    projects = workdir / "projects"
    projects.mkdir()
    write_project(projects, 42, TRUSTED_KEY, [pop2.public_key])
    write_project(projects, 43, UNTRUSTED_KEY, [])
    chain = LocalChain(
        workdir, log_level="debug", pop_tiers=2, pops_internal=False,
        pop_credentials=[pop2], projects_dir=projects,
    )  # fmt: skip
    chain.start(redis=redis_server, kafka=kafka_server)
    yield chain
    chain.stop()


def write_project(folder: Path, project_id: int, key: str, trusted: list[str]) -> None:
    (folder / f"{project_id}.yml").write_text(yaml.safe_dump({
        "projectId": project_id, "organizationId": 1,
        "publicKeys": [{"publicKey": key, "numericId": project_id}],
        "config": {"allowedDomains": ["*"], "trustedRelays": trusted,
                   "trustedRelaySettings": {"verifySignature": "enabled"}},
    }))  # fmt: skip


async def configs_for(url: str, creds: Credentials, keys: list[str]) -> dict[str, Any]:
    """Ask for configs until nothing is pending (the hop fetches them upstream meanwhile)."""
    answer: dict[str, Any] = {}
    for _ in range(200):
        body, headers = signed(creds, {"publicKeys": keys, "fullConfig": True})
        status, answer = post(url + PROJECTCONFIGS, body, headers)
        assert status == 200, answer
        if not answer.get("pending"):
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"still pending: {answer}")


def event_envelope(event_id: str, message: str) -> bytes:
    payload = json.dumps({"message": message}).encode()
    header = json.dumps({"type": "event", "length": len(payload)}).encode()
    return json.dumps({"event_id": event_id}).encode() + b"\n" + header + b"\n" + payload + b"\n"


def auth(key: str) -> dict[str, str]:
    return {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}


@pytest.mark.e2e
async def test_signed_envelopes_travel_the_chain(trust_chain: LocalChain) -> None:
    # POP1 -> POP2 (external, signs) -> processing (verifies) -> Kafka.
    event_id = uuid.uuid4().hex
    body = event_envelope(event_id, "through two POPs")
    url = f"{trust_chain.pop.url}/api/42/envelope/"
    status, answer = post(url, body, auth(TRUSTED_KEY))
    assert (status, answer) == (200, {"id": event_id})
    messages = await collect(
        trust_chain.kafka_bootstrap, "ingest-events", lambda ms: bool(by_event_id(ms, event_id))
    )
    assert by_event_id(messages, event_id)


@pytest.mark.e2e
async def test_unsigned_envelope_at_processing_is_rejected(trust_chain: LocalChain) -> None:
    url = f"{trust_chain.processing.url}/api/42/envelope/"
    body = event_envelope(uuid.uuid4().hex, "no signature")
    status = 0
    for _ in range(100):
        # The first request may be queued while the config is fetched; then it is a 403.
        status, answer = post(url, body, auth(TRUSTED_KEY))
        if status == 403:
            break
        await asyncio.sleep(0.05)
    assert status == 403
    assert "MissingSignature" in answer["detail"]


@pytest.mark.e2e
async def test_forged_signature_is_rejected(trust_chain: LocalChain) -> None:
    pop2 = trust_chain.pops[0].credentials
    assert pop2 is not None
    # POP2's id, but signed with another key.
    body, headers = signed(pop2, {"publicKeys": [TRUSTED_KEY]}, key=generate_credentials())
    status, answer = post(trust_chain.processing.url + PROJECTCONFIGS, body, headers)
    assert status == 401
    assert answer["detail"] == "invalid relay signature"
    # A valid signature over a different body does not verify either.
    _, headers = signed(pop2, {"publicKeys": []})
    status, answer = post(trust_chain.processing.url + PROJECTCONFIGS, body, headers)
    assert status == 401


@pytest.mark.e2e
async def test_expired_signature_is_rejected(trust_chain: LocalChain) -> None:
    pop2 = trust_chain.pops[0].credentials
    assert pop2 is not None
    body, headers = signed(pop2, {"publicKeys": [TRUSTED_KEY]}, age=timedelta(minutes=10))
    status, answer = post(trust_chain.processing.url + PROJECTCONFIGS, body, headers)
    assert status == 401
    assert answer["detail"] == "invalid relay signature"
    # The same relay, signing now, is let in.
    body, headers = signed(pop2, {"publicKeys": [TRUSTED_KEY]})
    status, _ = post(trust_chain.processing.url + PROJECTCONFIGS, body, headers)
    assert status == 200


@pytest.mark.e2e
async def test_unknown_relay_is_rejected(trust_chain: LocalChain) -> None:
    stranger = generate_credentials()
    body, headers = signed(stranger, {"publicKeys": [TRUSTED_KEY]})
    status, answer = post(trust_chain.processing.url + PROJECTCONFIGS, body, headers)
    assert status == 401
    assert answer["detail"] == "unknown relay id"
    # Nor may it register: the configserver, top of the chain, does not know it.
    register = {"relay_id": stranger.id, "public_key": stranger.public_key, "version": "26.9.0"}
    body, headers = signed(stranger, register)
    url = trust_chain.configserver.url + "/api/0/relays/register/challenge/"
    status, _ = post(url, body, headers)
    assert status == 403


@pytest.mark.e2e
async def test_relay_missing_from_trusted_relays_gets_no_config(trust_chain: LocalChain) -> None:
    pop2 = trust_chain.pops[0].credentials
    assert pop2 is not None
    answer = await configs_for(trust_chain.processing.url, pop2, [TRUSTED_KEY, UNTRUSTED_KEY])
    assert UNTRUSTED_KEY not in answer["configs"]
    trusted = answer["configs"][TRUSTED_KEY]
    assert trusted["projectId"] == 42
    # External relays get the limited config, even when they ask for the full one.
    assert set(trusted["config"]) <= {
        "allowedDomains", "trustedRelays", "piiConfig", "filterSettings",
        "datascrubbingSettings", "trimming", "sessionMetrics", "measurements",
        "breakdownsV2", "performanceScore", "features", "txNameRules", "txNameReady",
        "spanDescriptionRules",
    }  # fmt: skip
    # So the POPs treat project 43 as unknown: its data is refused once that is known.
    url = f"{trust_chain.pop.url}/api/43/envelope/"
    body = event_envelope(uuid.uuid4().hex, "not trusted")
    status = 0
    for _ in range(200):
        status, _ = post(url, body, auth(UNTRUSTED_KEY))
        if status == 403:
            break
        await asyncio.sleep(0.05)
    assert status == 403
