"""Shared inputs for the normalization tests: SDK corpus events and hand-written edge cases."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

CORPUS_DIR = os.environ.get("RELAY_CORPUS_DIR", "/work/shared/corpus/python")
RECEIVED_AT = "2026-11-26T12:05:00.123456789Z"


def envelope_items(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Split an envelope into (item header, payload) pairs."""
    _, _, rest = data.partition(b"\n")
    items = []
    while rest:
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        items.append((header, payload))
    return items


def corpus_events() -> list[tuple[str, dict[str, Any]]]:
    """Every event and transaction payload of the SDK corpus, by file name."""
    out = []
    for path in sorted(glob.glob(os.path.join(CORPUS_DIR, "*.envelope"))):
        with open(path, "rb") as f:
            data = f.read()
        for header, payload in envelope_items(data):
            if header.get("type") in ("event", "transaction"):
                out.append((os.path.basename(path), json.loads(payload)))
    return out


EID = "0123456789abcdef0123456789abcdef"

EDGE_CASES: dict[str, dict[str, Any]] = {
    "empty": {},
    "message": {"event_id": EID, "message": "Hello, World!"},
    "legacy_message_interface": {"sentry.interfaces.Message": {"message": "x %s", "params": ["a"]}},
    "logentry_percent": {"logentry": {"message": "Hello %s and %d", "params": ["a", 3]}},
    "logentry_curly": {"logentry": {"message": "Hi {} {}", "params": ["x", 1]}},
    "logentry_named": {"logentry": {"message": "Hi %(name)s", "params": {"name": "bob"}}},
    "logentry_same": {"logentry": {"message": "same", "formatted": "same"}},
    "logentry_empty": {"logentry": {"params": [1]}},
    "bad_types": {
        "server_name": 5,
        "time_spent": -1,
        "logger": 3,
        "level": "bogus",
        "platform": "bogus",
        "foo": 1,
        "dist": " x ",
        "release": 12,
        "environment": "a/b",
    },
    "maps": {
        "extra": {"a": None, "b": {}},
        "modules": {"a": None, "b": 1},
        "tags": {"a": None, "b": 1, "c": ""},
        "user": {"id": 5, "foo": "bar"},
        "fingerprint": [1, "a", None],
    },
    "device_numbers": {
        "contexts": {
            "device": {
                "online": "true",
                "memory_size": 1.5,
                "free_memory": "5",
                "usable_memory": True,
                "battery_level": "1.5",
                "screen_density": 3,
                "storage_size": 2.0,
            }
        }
    },
    "exception_types": {
        "exception": {
            "values": [{"type": 1, "value": {"a": 1}, "mechanism": {"type": "x", "foo": 2}}]
        },
        "user": {"ip_address": "nope", "id": 1.5, "username": True},
        "event_id": "ABCDEF12-3456-7890-abcd-ef1234567890",
    },
    "breadcrumb_shapes": {
        "breadcrumbs": [{"message": "a", "level": "WARN", "timestamp": "2020-01-01T00:00:00"}, "x"],
        "threads": "x",
        "tags": "a",
        "extra": [1],
        "fingerprint": "x",
        "level": "warn",
        "modules": {"a": 1},
    },
    "type_value_split": {"exception": {"values": [{"value": "ValueError: bad thing"}]}},
    "exception_missing": {"exception": {"values": [{"module": "x"}, {"type": "T"}]}},
    "single_exception_absorbs_stacktrace": {
        "exception": {"type": "E", "value": "v"},
        "stacktrace": {"frames": [{"function": "f", "filename": "a.py", "lineno": 3}]},
    },
    "frames": {
        "exception": {
            "values": [
                {
                    "type": "E",
                    "stacktrace": {
                        "frames": [
                            {"abs_path": "http://example.com/static/app.js", "function": "?"},
                            {"filename": "foo.py", "pre_context": [None, "x"]},
                            {"abs_path": "/x/y.py", "lineno": 1.0, "in_app": "yes"},
                        ]
                    },
                }
            ]
        }
    },
    "user_ip_auto": {
        "platform": "javascript",
        "user": {"ip_address": "{{auto}}"},
        "request": {"env": {"REMOTE_ADDR": "10.0.0.1"}},
    },
    "user_ip_remote_addr": {"request": {"env": {"REMOTE_ADDR": "192.168.0.1"}}},
    "sdk_infer_never": {
        "user": {"ip_address": "{{auto}}"},
        "sdk": {"name": "s", "version": "1", "settings": {"infer_ip": "never"}},
    },
    "contexts": {
        "contexts": {
            "os": {"raw_description": "Microsoft Windows NT 10.0.19042"},
            "runtime": {"raw_description": ".NET Framework 4.8.4250.0"},
            "browser": {"name": "Chrome", "version": "100"},
            "custom": {"a": 1},
            "mytype": {"type": "mytype", "x": [1]},
            "trace": {"trace_id": "a" * 32, "span_id": "b" * 16, "op": "http"},
        }
    },
    "contexts_linux": {"contexts": {"os": {"raw_description": "Linux 5.15.0 Ubuntu 22.04"}}},
    "tags_pairs": {
        "tags": [["a", "1"], ["a", "2"], ["release", "x"], ["environment", "prod"], ["", "v"]],
        "server_name": "srv",
        "site": "s",
    },
    "measurements_on_error": {"measurements": {"lcp": {"value": 1}}},
    "release_invalid": {"release": "latest", "environment": "prod"},
    "release_newline": {"release": "a\nb"},
    "dist_long": {"dist": "x" * 70},
    "request": {
        "request": {
            "url": "https://example.com/path?a=1&b=2#frag",
            "method": "post",
            "data": '{"a": 1}',
            "headers": {"content-type": "application/json", "Cookie": "a=1; b=2"},
        }
    },
    "request_form": {
        "request": {
            "url": "/relative/path?x=y",
            "data": "a=1&b=2",
            "headers": [["Content-Type", "text/plain"]],
            "method": "GET",
        }
    },
    "request_bad_method": {"request": {"method": "x y"}},
    "timestamps_str": {"timestamp": "2026-11-26T12:00:00Z", "start_timestamp": 1795694400.5},
    "timestamps_bad": {"timestamp": "yesterday"},
    "timestamps_offset": {"timestamp": "2026-11-26T12:00:00+02:00"},
    "timestamps_future": {"timestamp": 2795694400.0},
    "breadcrumbs_values": {
        "breadcrumbs": {"values": [{"timestamp": 1795694400, "category": "c", "data": {}}]}
    },
    "java_logger": {"platform": "java", "logger": "  com.example  "},
    "transaction": {
        "type": "transaction",
        "transaction": "/api/users",
        "start_timestamp": 1795694400.0,
        "timestamp": 1795694401.0,
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
        "spans": [
            {
                "span_id": "c" * 16,
                "trace_id": "a" * 32,
                "start_timestamp": 1795694400.1,
                "timestamp": 1795694400.2,
            }
        ],
        "measurements": {"fcp": {"value": 1.5}},
    },
    "transaction_open_span": {
        "type": "transaction",
        "start_timestamp": 1795694400.0,
        "timestamp": 1795694401.0,
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
        "spans": [{"span_id": "c" * 16, "trace_id": "a" * 32, "start_timestamp": 1795694400.1}],
    },
    "sdk_and_misc": {
        "sdk": {"name": "sentry.python", "version": "2.0", "integrations": ["a"]},
        "culprit": "x",
        "checksum": "abc",
        "transaction": "  t  ",
        "modules": {"django": "4.0"},
    },
    "threads": {
        "threads": {
            "values": [{"id": 1, "name": "main", "crashed": True, "stacktrace": {"frames": []}}]
        }
    },
    "legacy_keys": {"applecrashreport": 1, "repos": {}, "device": "x", "hashes": ["a"]},
    "incoming_meta": {
        "request": {"headers": {"Authorization": "[Filtered]"}},
        "_meta": {"request": {"headers": {"Authorization": {"": {"rem": [["!config", "s"]]}}}}},
    },
    "numeric_level": {"level": 30},
    "null_everything": {"user": None, "request": None, "contexts": None, "tags": None},
    "unicode": {"message": "h\u00e9llo \u2603", "tags": {"k": "\u00fc"}},
}
