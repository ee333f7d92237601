"""Generates ``docs/configuration.md`` from the config Structs (relay.config).

Every key is listed with its type and default, read from the Structs themselves; the
description is the ``#:`` comment above the field in relay/config.py (or the one after it
on the same line), else an entry of :data:`DESCRIPTIONS`. ``tests/unit/test_config_docs.py``
fails when the file is out of date; regenerate it with::

    python -m relay.dev.config_docs > docs/configuration.md
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

from relay.config import _RELAY_ONLY_KEYS, _RELAY_ONLY_SECTIONS, ByteSize, Config

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

#: Descriptions of keys whose field has no ``#:`` comment in relay/config.py.
DESCRIPTIONS: dict[str, str] = {
    "relay.mode": "`managed` registers with the upstream and fetches project configs; "
    "`proxy` forwards everything unchecked; `static` uses local configs only; `capture` "
    "keeps envelopes for tests.",
    "relay.instance": "`canary` marks a canary deployment.",
    "relay.upstream": "The next hop: a relay, the configserver or Sentry.",
    "relay.host": "Address the main listener binds to.",
    "relay.port": "Port of the main listener.",
    "relay.internal_host": "Address of a separate listener for health checks and `/metrics`.",
    "relay.internal_port": "Port of that listener; unset: they are served on the main one.",
    "relay.override_project_ids": "Accept envelopes whose project id differs from the "
    "key's project.",
    "http.timeout": "Seconds per upstream request.",
    "http.connection_timeout": "Seconds to establish a connection to the upstream.",
    "http.max_retry_interval": "Upper bound of the backoff between upstream retries (seconds).",
    "http.auth_interval": "Seconds between re-registrations with the upstream; null: once.",
    "http.outage_grace_period": "Seconds of failed upstream requests before the upstream "
    "counts as down.",
    "http.retry_delay": "First backoff step for upstream retries (seconds).",
    "http.project_failure_interval": "Seconds a project config fetch may fail before the "
    "project counts as broken.",
    "http.encoding": "Content-Encoding of envelopes sent upstream.",
    "http.host_header": "Host header sent to the upstream instead of the URL's host.",
    "http.forward": "Forward requests for unknown endpoints to the upstream.",
    "cache.project_request_full_config": "Ask the upstream for full project configs "
    "(only trusted relays get them).",
    "cache.project_expiry": "Seconds a project config is fresh.",
    "cache.project_grace_period": "Seconds a stale config is still used while it is refreshed.",
    "cache.miss_expiry": "Seconds an unknown or disabled key stays cached.",
    "cache.batch_interval": "Milliseconds project config requests are collected into a batch.",
    "cache.batch_size": "Project keys per `projectconfigs` request.",
    "cache.relay_expiry": "Seconds the public key of a downstream relay is cached.",
    "cache.downstream_relays_batch_interval": "Milliseconds downstream relay key lookups "
    "are batched.",
    "cache.global_config_fetch_interval": "Seconds between global config fetches.",
    "limits.max_concurrent_requests": "Concurrent requests to the upstream.",
    "limits.max_event_size": "Largest event payload.",
    "limits.max_attachment_size": "Largest single attachment.",
    "limits.max_attachment_count": "Most attachments in one envelope.",
    "limits.max_attachments_size": "Largest sum of attachments in one envelope.",
    "limits.max_upload_size": "Largest TUS upload body.",
    "limits.max_client_reports_size": "Largest sum of client reports in one envelope.",
    "limits.max_client_reports_count": "Most client reports in one envelope.",
    "limits.max_check_in_size": "Largest check-in payload.",
    "limits.max_envelope_size": "Largest envelope, on the wire and decompressed.",
    "limits.max_session_count": "Most sessions in one envelope.",
    "limits.max_sessions_size": "Largest sum of session payloads in one envelope.",
    "limits.max_api_payload_size": "Largest body of a forwarded API request.",
    "limits.max_api_file_upload_size": "Largest forwarded file upload.",
    "limits.max_api_chunk_upload_size": "Largest forwarded chunk upload.",
    "limits.max_profile_size": "Largest profile.",
    "limits.max_trace_metric_size": "Largest trace metric item.",
    "limits.max_log_size": "Largest log item.",
    "limits.max_span_size": "Largest span item.",
    "limits.max_standalone_span_count": "Most standalone spans in one envelope.",
    "limits.max_container_size": "Largest item container (logs, spans).",
    "limits.max_metric_buckets_size": "Largest metric buckets item.",
    "limits.max_replay_compressed_size": "Largest compressed replay recording.",
    "limits.max_thread_count": "Accepted for compatibility (Relay's worker threads).",
    "limits.shutdown_timeout": "Seconds to drain on SIGTERM before exiting.",
    "limits.keepalive_timeout": "Seconds an idle client connection stays open.",
    "logging.level": "`off`, `error`, `warn`, `info`, `debug` or `trace`. Dropped "
    "envelopes are logged with their event id at `debug`.",
    "logging.format": "`json` writes one object per line (with `event_id` fields); "
    "`auto` is `pretty` on a terminal, else `simplified`.",
    "sentry.dsn": "Where the relay reports its own errors.",
    "sentry.enabled": "Report the relay's own errors to `sentry.dsn`.",
    "sentry.environment": "Environment of those reports.",
    "sentry.server_name": "Server name of those reports.",
    "sentry.default_tags": "Tags added to those reports.",
    "processing.enabled": "Write to Kafka instead of forwarding (a processing relay).",
    "processing.kafka_config": "librdkafka-style `{name, value}` list: `bootstrap.servers` "
    "(required), `compression.type`, `acks`, `linger.ms`, `batch.size`, "
    "`message.max.bytes`, SASL/SSL parameters, ...",
    "processing.topics": "Topic names by Relay's keys, e.g. `events: ingest-events`.",
    "processing.kafka_validate_topics": "Check at start-up that the topics exist.",
    "processing.redis": "Redis URL (`redis://host:port/db`), `{server: ...}`, a Redis "
    "Cluster `{cluster_nodes: [redis://..., ...]}`, or `{project_configs: ..., quotas: ...}`; "
    "options `max_connections`, `create_timeout`, `response_timeout` (seconds).",
    "processing.attachment_chunk_size": "Size of attachment chunks in Kafka.",
    "processing.projectconfig_cache_prefix": "Prefix of project config keys in Redis.",
    "processing.max_secs_in_future": "Events further in the future are clamped or refused.",
    "processing.max_session_secs_in_past": "Sessions older than this are dropped.",
    "outcomes.emit_outcomes": "`true`: send outcomes upstream as metrics; "
    "`as_client_reports`: only filtered and rate-limited ones, as client reports; `false`.",
    "outcomes.source": "`source` field of the outcomes this relay emits.",
    "outcomes.batch_size": "Outcomes per batch.",
    "outcomes.batch_interval": "Milliseconds outcomes are collected before sending.",
    "auth.ready": "`always` makes `ready` independent of the registration.",
    "auth.static_relays": "`{relay_id: {public_key, internal}}`: downstream relays allowed "
    "without asking the upstream; `internal` ones are trusted.",
    "auth.signature_max_age": "Seconds a relay signature stays valid.",
    "aggregator.bucket_interval": "Seconds per metric bucket.",
    "aggregator.initial_delay": "Seconds a bucket stays open for late data.",
    "aggregator.max_secs_in_past": "Older metric buckets are dropped.",
    "aggregator.max_secs_in_future": "Metric buckets further ahead are dropped.",
    "aggregator.max_total_bucket_bytes": "Memory bound of all buckets.",
    "aggregator.max_project_key_bucket_bytes": "Memory bound per project key.",
    "aggregator.flush_partitions": "Partitions of a flush.",
    "aggregator.flush_batching": "How flushed buckets are batched.",
    "aggregator.max_name_length": "Longest metric name.",
    "aggregator.max_tag_key_length": "Longest tag key.",
    "aggregator.max_tag_value_length": "Longest tag value.",
    "aggregator.max_flush_bytes": "Largest flush batch.",
    "aggregator.flush_interval": "Seconds between flush checks.",
    "spool.envelopes.path": "The SQLite file of the disk spool: envelopes waiting for their "
    "project config (past `batch_size_bytes` per project, and at shutdown), and on a POP those "
    "the upstream does not take. Unset: memory only.",
    "spool.envelopes.max_disk_size": (
        "Bound of the spool file, counted as Relay does (database pages in use; a fresh file "
        "uses 24KiB); while it has no room, readiness answers 503."
    ),
}

_FIELD_RE = re.compile(r"^\s+(?P<name>[a-z_][a-z0-9_]*)\s*:")


def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above fields (and ``# ...`` after them) in the class source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = _FIELD_RE.match(line)
        if match and not stripped.startswith(("def ", "class ", "@")):
            name = match.group("name")
            text = " ".join(pending)
            if text:
                comments[name] = text
            elif "  # " in line:
                trailing = line.split("  # ", 1)[1].strip()
                if not trailing.startswith(("fmt:", "type:", "noqa")):
                    comments[name] = "(" + trailing + ")"
        pending = []
    return comments


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is ByteSize:
        return "size"
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{_literal(a)}`" for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return "list" if origin is list else "map"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp)


def _literal(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _format_size(value: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def _format_default(field: msgspec.structs.FieldInfo) -> str:
    if field.default is not msgspec.NODEFAULT:
        value = field.default
    elif field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, ByteSize):
        return f"`{_format_size(int(value))}`"
    if isinstance(value, bool):
        return f"`{_literal(value)}`"
    if isinstance(value, float) and value == int(value):
        return f"`{int(value)}`"
    if isinstance(value, dict | list):
        return f"`{msgspec.json.encode(value).decode()}`"
    return f"`{value}`"


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _rows(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every leaf key of ``cls``."""
    comments = _field_comments(cls)
    rows: list[tuple[str, str, str, str]] = []
    for field in msgspec.structs.fields(cls):
        key = f"{prefix}{field.encode_name}"
        if _is_section(field.type) and prefix:
            rows.extend(_rows(field.type, f"{key}."))
            continue
        comment = comments.get(field.name, "")
        if comment.startswith("(") and key in DESCRIPTIONS:
            text = DESCRIPTIONS[key]
        else:
            text = comment or DESCRIPTIONS.get(key, "")
        text = text.replace("``", "`").replace("|", "\\|").replace("\n", " ")
        rows.append((key, _type_name(field.type), _format_default(field), text))
    return rows


def render() -> str:
    """The whole of docs/configuration.md."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m relay.dev.config_docs > docs/configuration.md` from the",
        "     config Structs in relay/config.py; tests/unit/test_config_docs.py checks it. -->",
        "",
        "The relay reads `config.yml` from its config directory: `-c DIR`, else",
        "`$RELAY_CONFIG_DIR`, else `.relay`. Keys are Sentry Relay's. Sections merge key by",
        'key with the defaults below; lists replace. Sizes may be written `1048576`, `"1MiB"`',
        'or `"1MB"`. `relay config init` writes a commented starter file, `relay config',
        "validate` checks one (exit status 1 and the offending key on error), and",
        "`relay config show` prints the effective values.",
        "",
        "As in Relay, a value written `${file:PATH}` is replaced by the contents of that file",
        "(relative to the config directory; a trailing newline dropped) and `${NAME}` by the",
        "environment variable, so secrets can stay out of the file; a missing one is an error.",
        "",
        "Environment variables override the file: `RELAY_MODE`, `RELAY_UPSTREAM_URL`,",
        "`RELAY_HOST`, `RELAY_PORT`, `RELAY_PROCESSING_ENABLED`, `RELAY_KAFKA_BROKER_URL`,",
        "`RELAY_REDIS_URL`, `RELAY_ID`, `RELAY_PUBLIC_KEY`, `RELAY_SECRET_KEY`,",
        "`RELAY_INSTANCE`, `RELAY_LOG_LEVEL`, `RELAY_LOG_FORMAT`, `SHUTDOWN_TIMEOUT`; command",
        "line flags override both.",
        "",
    ]
    for field in msgspec.structs.fields(Config):
        section = field.encode_name
        cls = field.type
        doc = inspect.getdoc(cls) or ""
        if doc.startswith(("Create new instances", "A base class")):
            doc = ""
        out += [f"## `{section}`", ""]
        if doc:
            out += [doc.splitlines()[0].replace("``", "`"), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, type_name, default, text in _rows(cls, f"{section}."):
            out.append(f"| `{key}` | {type_name} | {default} | {text} |")
        out.append("")
    out += [
        "## Accepted for compatibility",
        "",
        "These keys and sections of Sentry Relay are accepted and ignored (with a debug log),",
        "so that an unchanged Relay `config.yml` loads. A key of a section written at the top",
        "level (`kafka_config` for `processing.kafka_config`) is ignored with a warning, as Relay",
        "ignores it. Any other key is an error that names it.",
        "",
        "- Sections: " + ", ".join(f"`{s}`" for s in sorted(_RELAY_ONLY_SECTIONS)),
    ]
    for section, keys in sorted(_RELAY_ONLY_KEYS.items()):
        if keys:
            out.append(f"- `{section}`: " + ", ".join(f"`{k}`" for k in sorted(keys)))
    out.append("")
    return "\n".join(out)


#: Keys ``relay config init`` writes uncommented; every other key is written commented out.
STARTER_KEYS = frozenset(
    {"relay.mode", "relay.upstream", "relay.host", "relay.port", "logging.level",
     "logging.format"}
)  # fmt: skip


def _yaml_value(field: msgspec.structs.FieldInfo) -> str:
    if field.default is not msgspec.NODEFAULT:
        value = field.default
    elif field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    else:
        value = None
    if isinstance(value, ByteSize):
        return f'"{_format_size(int(value))}"' if int(value) >= 1024 else str(int(value))
    text: str = msgspec.json.encode(value).decode()
    return text


def _starter_lines(cls: type, prefix: str, depth: int, active: set[str]) -> list[str]:
    indent = "  " * depth
    lines: list[str] = []
    for field in msgspec.structs.fields(cls):
        key = f"{prefix}{field.encode_name}"
        if _is_section(field.type):
            sub = _starter_lines(field.type, f"{key}.", depth + 1, active)
            on = any(k.startswith(f"{key}.") for k in active)
            lines.append(f"{indent}{'' if on else '# '}{field.encode_name}:")
            lines.extend(sub)
            continue
        comment = _field_comments(cls).get(field.name, "")
        if not comment or comment.startswith("("):
            comment = DESCRIPTIONS.get(key, "")
        comment = comment.split(". ")[0].rstrip(".").replace("``", "`")
        line = f"{field.encode_name}: {_yaml_value(field)}"
        if key not in active:
            line = f"# {line}"
        if comment:
            line = f"{line}  # {comment}"
        lines.append(f"{indent}{line}")
    return lines


def starter_config() -> str:
    """A commented ``config.yml``: the essential keys set, every other key commented out
    with its default (uncommenting all of it gives the defaults)."""
    head = [
        "# Relay configuration, written by `relay config init`.",
        "# Every key is listed with its default; uncomment a line to change it.",
        "# Reference: docs/configuration.md. Check this file with `relay config validate`.",
        "",
    ]
    lines: list[str] = []
    for field in msgspec.structs.fields(Config):
        section = field.encode_name
        active = {k for k in STARTER_KEYS if k.startswith(f"{section}.")}
        lines.append(f"{'' if active else '# '}{section}:")
        lines.extend(_starter_lines(field.type, f"{section}.", 1, set(STARTER_KEYS)))
        lines.append("")
    return "\n".join(head + lines)


def main() -> int:
    """Print the document (``--write``: update docs/configuration.md in place)."""
    text = render()
    if "--write" in sys.argv[1:]:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["DESCRIPTIONS", "render", "starter_config"]

if __name__ == "__main__":
    sys.exit(main())
