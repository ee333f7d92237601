"""Generated events with planted secrets: same output as Relay, and no secret survives."""

from __future__ import annotations

import json
from typing import Any

import sentry_relay.processing as sentry_relay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay.pii as pii
from tests.unit.pii_corpus import DATASCRUBBING_VARIANTS, PII_CONFIGS

SECRETS = [
    "4111 1111 1111 1111",
    "jane.doe@example.com",
    "Bearer abcdef0123456789",
    "192.168.17.42",
    "2001:db8::ff00:42:8329",
    "123-45-6789",
    "DE89370400440532013000",
    "https://admin:hunter2@db.example.com/x",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
    "C:\\Users\\jane\\file.txt",
    "/home/jane/.ssh/id_rsa",
    "sessionid=s3cr3tcookie; theme=dark",
]
SENSITIVE_KEYS = ["password", "api_key", "secret", "auth_token", "passwd", "credentials"]

words = st.sampled_from(["alpha", "beta", "42", "true", "", "x y z", "ünï", "null", "7.5"])
texts = st.one_of(
    words,
    st.sampled_from(SECRETS),
    st.builds(lambda a, b: f"{a} {b}", words, st.sampled_from(SECRETS)),
)
keys = st.one_of(
    st.sampled_from(SENSITIVE_KEYS), st.sampled_from(["foo", "data", "cookie", "Token"])
)
scalars = st.one_of(
    texts, st.integers(-5, 10**6), st.booleans(), st.none(), st.sampled_from([0.5, 1.25, 7.0])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)


def _frame() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"function": words, "abs_path": texts, "filename": texts},
        optional={"vars": st.dictionaries(keys, json_values, max_size=3), "context_line": texts},
    )


events = st.fixed_dictionaries(
    {"event_id": st.just("9ec79c33ec9942ab8353589fcb2e04dc")},
    optional={
        "message": texts,
        "logentry": st.fixed_dictionaries({"formatted": texts}),
        "extra": st.dictionaries(keys, json_values, max_size=4),
        "user": st.fixed_dictionaries(
            {},
            optional={"ip_address": texts, "email": texts, "username": texts, "data": json_values},
        ),
        "request": st.fixed_dictionaries(
            {},
            optional={
                "url": texts,
                "headers": st.dictionaries(
                    st.sampled_from(["Authorization", "Cookie", "X-Api-Key", "User-Agent"]),
                    texts,
                    max_size=3,
                ),
                "cookies": st.dictionaries(
                    st.sampled_from(["sessionid", "theme", "csrftoken"]), texts, max_size=2
                ),
                "data": json_values,
                "query_string": st.dictionaries(keys, texts, max_size=2),
                "env": st.dictionaries(st.sampled_from(["REMOTE_ADDR", "HOME"]), texts, max_size=2),
            },
        ),
        "tags": st.dictionaries(keys, texts, max_size=3),
        "breadcrumbs": st.lists(
            st.fixed_dictionaries(
                {"message": texts},
                optional={"data": st.dictionaries(keys, json_values, max_size=2)},
            ),
            max_size=2,
        ).map(lambda v: {"values": v}),
        "exception": st.lists(
            st.fixed_dictionaries(
                {"type": words, "value": texts},
                optional={
                    "stacktrace": st.lists(_frame(), min_size=1, max_size=2).map(
                        lambda f: {"frames": f}
                    )
                },
            ),
            max_size=2,
        ).map(lambda v: {"values": v}),
        "contexts": st.fixed_dictionaries(
            {},
            optional={
                "custom": st.dictionaries(keys, json_values, max_size=3),
                "device": st.fixed_dictionaries({"name": texts}),
                "trace": st.fixed_dictionaries(
                    {
                        "trace_id": st.just("4c79f60c11214eb38604f4ae0781bfb2"),
                        "span_id": st.just("fa90fdead5f74053"),
                    },
                    optional={"data": st.dictionaries(keys, json_values, max_size=2)},
                ),
            },
        ),
        "server_name": texts,
    },
)

CONFIGS = [sentry_relay.convert_datascrubbing_config(s) for s in DATASCRUBBING_VARIANTS[:3]] + [
    PII_CONFIGS[name]
    for name in (
        "builtin_types",
        "redact_pair",
        "pattern_groups",
        "and_or_not",
        "anything_hash_strings",
        "explicit_rule_types",
        "pattern_flags_and_groups",
        "value_types_misc",
    )
]
DEFAULT = CONFIGS[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, config_index=st.integers(0, len(CONFIGS) - 1))
def test_generated_events_match_relay(event: dict[str, Any], config_index: int) -> None:
    canonical = sentry_relay.pii_strip_event({}, event)
    config = CONFIGS[config_index]
    assert pii.pii_strip_event(config, canonical) == sentry_relay.pii_strip_event(config, canonical)


# Secrets the default scrubbing must catch wherever a PII-able string holds them.
# Email addresses are not part of the default rules (only of replace-only fields).
_ALWAYS_CAUGHT = [
    s for s in SECRETS if not s.startswith(("2001", "sessionid", "/home", "C:", "jane.doe"))
]


# The part of each secret that must disappear (PEM headers and "Bearer" may stay).
CORES = {
    "4111 1111 1111 1111": "4111 1111",
    "Bearer abcdef0123456789": "abcdef0123456789",
    "192.168.17.42": "192.168.17.42",
    "123-45-6789": "123-45-6789",
    "DE89370400440532013000": "DE89370400440532013000",
    "https://admin:hunter2@db.example.com/x": "hunter2",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----": "MIIEvQIBADANBg",
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(["foo", "data", "note"]), secret=st.sampled_from(_ALWAYS_CAUGHT))
def test_planted_secret_never_survives(key: str, secret: str) -> None:
    event = {
        "extra": {key: f"value {secret} end", "password": secret},
        "request": {"data": {key: secret}, "headers": [["Authorization", secret]]},
        "user": {"data": {key: [secret]}},
        "breadcrumbs": {"values": [{"message": f"x {secret}"}]},
    }
    canonical = sentry_relay.pii_strip_event({}, event)
    scrubbed = pii.pii_strip_event(DEFAULT, canonical)
    body = {k: v for k, v in scrubbed.items() if k != "_meta"}
    text = json.dumps(body)
    assert CORES[secret] not in text
