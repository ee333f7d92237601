"""Shared helpers for the PII tests: corpus events and piiConfigs used for differential runs."""

from __future__ import annotations

import json
from typing import Any

from tests.paths import CORPUS as SHARED_CORPUS

CORPUS = SHARED_CORPUS


def envelope_items(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Split an envelope into (item header, payload) pairs."""
    first, _, rest = data.partition(b"\n")
    del first
    items = []
    pos = 0
    while pos < len(rest):
        end = rest.find(b"\n", pos)
        end = len(rest) if end == -1 else end
        line = rest[pos:end]
        pos = end + 1
        if not line.strip():
            continue
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            end = rest.find(b"\n", pos)
            end = len(rest) if end == -1 else end
            payload, pos = rest[pos:end], end + 1
        else:
            payload, pos = rest[pos : pos + length], pos + length + 1
        items.append((header, payload))
    return items


def corpus_events() -> list[tuple[str, dict[str, Any]]]:
    """Every event/transaction payload of the corpus, by file name."""
    out = []
    for path in sorted(CORPUS.glob("*.envelope")):
        for header, payload in envelope_items(path.read_bytes()):
            if header.get("type") in ("event", "transaction"):
                out.append((f"{path.name}:{header['type']}", json.loads(payload)))
    return out


DATASCRUBBING_VARIANTS: list[dict[str, Any]] = [
    {"scrubData": True, "scrubDefaults": True},
    {"scrubData": True, "scrubDefaults": True, "scrubIpAddresses": True},
    {
        "scrubData": True,
        "scrubDefaults": True,
        "scrubIpAddresses": True,
        "sensitiveFields": ["card", "cvv", "order id"],
        "excludeFields": ["currency", "extra.debug", "a b"],
    },
    {"scrubIpAddresses": True},
    {"scrubData": True, "sensitiveFields": ["Token"]},
]

# Hand-written piiConfigs: every rule type, every redaction and the selector operators.
PII_CONFIGS: dict[str, dict[str, Any]] = {
    "anything_remove_strings": {"applications": {"$string": ["@anything:remove"]}},
    "anything_hash_strings": {"applications": {"$string": ["@anything:hash"]}},
    "anything_mask_deep": {"applications": {"**": ["@anything:mask"]}},
    "anything_replace_objects": {"applications": {"$object": ["@anything:replace"]}},
    "numbers_and_arrays": {"applications": {"$number || $array": ["@anything:remove"]}},
    "common_everywhere": {"applications": {"**": ["@common"]}},
    "builtin_types": {
        "applications": {
            "$string": [
                "@imei",
                "@mac",
                "@uuid",
                "@email:mask",
                "@ip:hash",
                "@creditcard:mask",
                "@iban:hash",
                "@userpath:mask",
                "@pemkey:hash",
                "@urlauth",
                "@usssn:replace",
                "@bearer:mask",
                "@password:replace",
            ]
        }
    },
    "pattern_groups": {
        "rules": {
            "digits": {
                "type": "pattern",
                "pattern": r"([a-z]+)(\d+)",
                "replaceGroups": [2],
                "redaction": {"method": "replace", "text": "[n]"},
            },
            "whole": {
                "type": "pattern",
                "pattern": "secret|hunter2",
                "redaction": {"method": "mask"},
            },
            "nogroups": {"type": "pattern", "pattern": "EUR", "replaceGroups": None},
        },
        "applications": {"$string": ["digits", "whole", "nogroups"]},
    },
    "redact_pair": {
        "rules": {
            "pair": {
                "type": "redact_pair",
                "keyPattern": "(?i)card|cvv|token|cookie",
                "redaction": {"method": "replace", "text": "[pair]"},
            }
        },
        "applications": {"**": ["pair"]},
    },
    "redact_pair_camel_remove": {
        "rules": {"pair": {"type": "redactPair", "keyPattern": "order|user"}},
        "applications": {"$object || $string || $number": ["pair"]},
    },
    "multiple_hidden": {
        "rules": {
            "combo": {
                "type": "multiple",
                "rules": ["@email", "@ip", "@creditcard"],
                "hideInner": True,
                "redaction": {"method": "hash"},
            }
        },
        "applications": {"$string": ["combo"]},
    },
    "multiple_visible_alias": {
        "rules": {
            "combo": {"type": "multiple", "rules": ["al", "@password:filter"]},
            "al": {"type": "alias", "rule": "@email:remove", "hideInner": False},
        },
        "applications": {"$string": ["combo"]},
    },
    "alias_hidden_cycle": {
        "rules": {
            "a": {"type": "alias", "rule": "b", "hideInner": True},
            "b": {"type": "alias", "rule": "a"},
            "c": {"type": "alias", "rule": "@ip:mask", "hideInner": True},
        },
        "applications": {"$string": ["a", "c", "missing"]},
    },
    "frame_vars": {"applications": {"$frame.vars": ["@anything:remove"]}},
    "frame_vars_children": {"applications": {"$frame.vars.*": ["@anything:hash"]}},
    "http_headers": {"applications": {"$http.headers": ["@anything:remove"]}},
    "http_header_values": {"applications": {"$http.headers.*": ["@anything:mask"]}},
    "paths_and_quoted": {
        "applications": {
            "extra.'sys.argv'": ["@anything:remove"],
            "request.headers.'User-Agent'": ["@anything:mask"],
            "contexts.trace.data.*": ["@anything:hash"],
            "user.email || user.ip_address": ["@anything:replace"],
            "tags.tenant": ["@anything:remove"],
        }
    },
    "and_or_not": {
        "applications": {
            "($string || $number) && !extra.** && !$frame.**": ["@anything:mask"],
            "~$string & $object.*": ["@anything:remove"],
        }
    },
    "deep_wildcard_prefix": {
        "applications": {"$exception.**": ["@anything:remove"], "breadcrumbs.**": ["@email"]}
    },
    "indices": {"applications": {"exception.values.0.stacktrace.frames.1.vars.*": ["@anything"]}},
    "user_ip_hash": {"applications": {"$user.ip_address": ["@anything:hash"]}},
    "logentry_message": {
        "applications": {"$logentry.formatted || $message": ["@anything:replace"]}
    },
    "legacy_selectors": {"applications": {"freeform": ["@email"], "databag": ["@password"]}},
    "redaction_other_and_default": {
        "rules": {
            "odd": {"type": "pattern", "pattern": "[aeiou]", "redaction": {"method": "encrypt"}},
            "plain": {"type": "email"},
        },
        "applications": {"$string": ["odd", "plain"]},
    },
    "cookies_rule": {"applications": {"**": ["@cookies:filter"]}},
    "hash_key_ignored": {
        "vars": {"hashKey": "s3cr3t"},
        "applications": {"$string": ["@email:hash"]},
    },
    "span_data": {"applications": {"$span.data.** || $span.description": ["@anything:mask"]}},
    "sdk_and_breadcrumbs": {
        "applications": {"$sdk.** || $breadcrumb.data.*": ["@anything:remove"]}
    },
    # Every built-in rule type written as a rule of its own (not through `@name`), each
    # with another redaction, including the legacy spellings of two type names.
    "explicit_rule_types": {
        "rules": {
            "r_imei": {"type": "imei", "redaction": {"method": "mask"}},
            "r_mac": {"type": "mac", "redaction": {"method": "hash"}},
            "r_uuid": {"type": "uuid", "redaction": {"method": "replace", "text": "<u>"}},
            "r_email": {"type": "email", "redaction": {"method": "default"}},
            "r_ip": {"type": "ip", "redaction": {"method": "mask"}},
            "r_cc": {"type": "creditcard", "redaction": {"method": "hash"}},
            "r_iban": {"type": "iban", "redaction": {"method": "remove"}},
            "r_path": {"type": "userpath", "redaction": {"method": "replace", "text": "~"}},
            "r_pem": {"type": "pemkey", "redaction": {"method": "mask"}},
            "r_url": {"type": "url_auth", "redaction": {"method": "hash"}},
            "r_ssn": {"type": "us_ssn", "redaction": {"method": "mask"}},
            "r_bearer": {"type": "bearer", "redaction": {"method": "replace", "text": "B"}},
            "r_password": {"type": "password", "redaction": {"method": "hash"}},
            "r_cookies": {"type": "cookies", "redaction": {"method": "mask"}},
        },
        "applications": {
            "$string": [
                "r_imei",
                "r_mac",
                "r_uuid",
                "r_email",
                "r_ip",
                "r_cc",
                "r_iban",
                "r_path",
                "r_pem",
                "r_url",
                "r_ssn",
                "r_bearer",
                "r_password",
            ],
            "$http.cookies || $http.headers.*": ["r_cookies"],
        },
    },
    "pattern_flags_and_groups": {
        "rules": {
            "kv": {
                "type": "pattern",
                "pattern": r"(?i)(user|id)=([a-z0-9]{2,})",
                "replaceGroups": [1, 2],
                "redaction": {"method": "hash"},
            },
            "hex": {
                "type": "pattern",
                "pattern": r"\b{start}\x{30}x[0-9a-f]+",
                "redaction": {"method": "replace", "text": "0x?"},
            },
        },
        "applications": {"$string": ["kv", "hex"]},
    },
    "value_types_misc": {
        "applications": {
            "$error.value || $thread.name || $breadcrumb.message": ["@anything:mask"],
            "$boolean || $datetime": ["@anything:remove"],
            "!$frame.** && $frame.*": ["@ip:replace"],
        }
    },
}
