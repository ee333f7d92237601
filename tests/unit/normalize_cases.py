"""Shared inputs for the normalization tests: SDK corpus events and hand-written edge cases."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from tests.paths import CORPUS

CORPUS_DIR = os.environ.get("RELAY_CORPUS_DIR", str(CORPUS))
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


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {f"k{i}": value}
    return value


#: Events over Relay's size limits (run with ``enable_trimming=True``).
TRIM_CASES: dict[str, dict[str, Any]] = {
    "long_strings": {
        "logger": "x" * 300,
        "culprit": "c" * 250,
        "server_name": "s" * 300,
        "transaction": "t" * 201,
        "message": "m" * 9000,
        "exception": {"values": [{"type": "T" * 300, "value": "v" * 9000, "module": "m" * 280}]},
    },
    "unicode_long": {"logger": "\u00e9" * 100, "server_name": "\u2603" * 300},
    "deep_extra": {
        "extra": {
            "a": _nested(10),
            "b": _nested(5),
            "c": _nested(6),
            "d": _nested(7),
            "e": [[[[[[[[1.5, 1e20, 1e-5, True, None]]]]]]]],
        }
    },
    "big_extra": {"extra": {f"k{i}": "x" * 1000 for i in range(300)}},
    "big_extra_value": {
        "extra": {"a": ["y" * 100 for _ in range(300)], "b": {f"q{i}": i for i in range(3000)}}
    },
    "breadcrumbs": {
        "breadcrumbs": [
            {
                "message": "b" * 9000,
                "category": "c" * 200,
                "data": {f"d{i}": "z" * 100 for i in range(40)},
            }
            for _ in range(3)
        ]
    },
    "many_breadcrumbs": {"breadcrumbs": [{"message": f"m{i}"} for i in range(300)]},
    "many_frames": {
        "exception": {
            "values": [
                {
                    "type": "E",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": f"f{i}",
                                "in_app": i % 3 == 0,
                                "vars": {"a": i},
                                "pre_context": ["x"],
                                "post_context": ["y"],
                            }
                            for i in range(300)
                        ]
                    },
                }
            ]
        }
    },
    "slimmed_frames": {
        "stacktrace": {
            "frames": [
                {
                    "function": "f" * 600,
                    "filename": "g" * 300,
                    "vars": {"x": "q" * 3000},
                    "pre_context": ["x"],
                    "post_context": ["y"],
                    "in_app": i < 10,
                }
                for i in range(60)
            ]
        }
    },
    "contexts_big": {
        "contexts": {
            "custom": {f"k{i}": "v" * 100 for i in range(100)},
            "os": {"name": "n" * 9000},
            "deep": _nested(9),
        }
    },
    "request_big": {
        "request": {
            "url": "http://x.com/" + "p" * 300,
            "data": {f"k{i}": "v" * 300 for i in range(40)},
            "headers": {f"H{i}": "h" * 300 for i in range(40)},
            "cookies": {f"c{i}": "c" * 100 for i in range(40)},
            "query_string": {f"q{i}": "q" * 100 for i in range(20)},
            "env": {"A": "b" * 10000},
        }
    },
    "user": {
        "user": {
            "id": "i" * 200,
            "email": "e" * 100,
            "username": "u" * 200,
            "name": "n" * 200,
            "geo": {"city": "c" * 2000},
        }
    },
    "logentry_params": {"logentry": {"message": "%s", "params": ["p" * 3000, _nested(8)]}},
    "spans": {
        "type": "transaction",
        "start_timestamp": 1795694400.0,
        "timestamp": 1795694401.0,
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
        "spans": [
            {
                "span_id": "c" * 16,
                "trace_id": "a" * 32,
                "start_timestamp": 1795694400.1,
                "timestamp": 1795694400.2,
                "description": "d" * 200,
                "op": "o" * 200,
                "data": {"k": "v"},
            }
            for _ in range(4000)
        ],
    },
    "tags_long": {"tags": {"a": "x" * 250, "b" * 250: "y"}},
    "modules": {"modules": {f"m{i}": "1.0" * 10 for i in range(400)}},
    "mechanism": {
        "exception": {
            "values": [
                {
                    "type": "E",
                    "mechanism": {
                        "type": "t" * 200,
                        "data": {f"d{i}": "z" * 100 for i in range(40)},
                        "description": "d" * 9000,
                    },
                }
            ]
        }
    },
    "threads": {
        "threads": {
            "values": [
                {
                    "id": "i" * 300,
                    "name": "n" * 2000,
                    "stacktrace": {"frames": [{"function": "f"} for _ in range(260)]},
                }
            ]
        }
    },
    "sdk": {"sdk": {"name": "n" * 300, "version": "v" * 300}},
    "redacted_long": {
        "logentry": {"formatted": "[Filtered] " + "z" * 9000},
        "_meta": {"logentry": {"formatted": {"": {"rem": [["@password", "s", 0, 10]]}}}},
    },
}

#: Real user agents: desktop and mobile browsers, bots, libraries and junk.
USER_AGENTS: list[str] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/119.0.6045.169 Mobile/15E148 Safari/604.1",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "okhttp/4.12.0",
    "",
    "nonsense",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
    "Mozilla/5.0 (PlayStation 4 3.11) AppleWebKit/537.73 (KHTML, like Gecko)",
    "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) "
    "NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977",
    "Opera/9.80 (Windows NT 6.0) Presto/2.12.388 Version/12.14",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
]

#: Android user agents whose device model Relay also maps to a marketing name
#: (``android_models.csv``, not bundled here): only the device ``name`` differs.
ANDROID_MODEL_USER_AGENTS: list[str] = [
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Pixel 6) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 11; M2010J19SG Build/RKQ1.201004.002)",
]

UA_CASES: dict[str, dict[str, Any]] = {
    f"ua{i}_{platform}": {"platform": platform, "request": {"headers": {"User-Agent": ua}}}
    for i, ua in enumerate(USER_AGENTS)
    for platform in ("javascript", "python")
}
UA_CASES.update(
    {
        "hints_chrome": {
            "platform": "javascript",
            "request": {
                "headers": {
                    "User-Agent": USER_AGENTS[0],
                    "sec-ch-ua": '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"',
                    "sec-ch-ua-platform": '"Windows"',
                    "sec-ch-ua-platform-version": '"15.0.0"',
                    "sec-ch-ua-model": '""',
                }
            },
        },
        "hints_fake_brand_only": {
            "platform": "javascript",
            "request": {
                "headers": {"sec-ch-ua": '" Not A;Brand";v="99"', "sec-ch-ua-platform": '""'}
            },
        },
        "existing_contexts": {
            "platform": "javascript",
            "request": {"headers": {"user-agent": USER_AGENTS[3]}},
            "contexts": {"os": {"name": "mine"}, "device": {"model": "m"}},
        },
        "no_user_agent": {"request": {"headers": [["Accept", "x"]]}},
    }
)
