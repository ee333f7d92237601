"""The event schema: Relay's protocol types as field tables, in declaration order.

Only the shape is described here (names, types, serialization and size attributes); the
behaviour lives in the normalization steps.
"""

from __future__ import annotations

from typing import Final

from relay.normalize import primitives as p
from relay.normalize.containers import (
    COOKIES,
    FINGERPRINT,
    HEADERS,
    QUERY,
    TAGS,
    ContextsKind,
    ValuesKind,
)
from relay.normalize.measurements import named_map_converter
from relay.normalize.meta import expected, set_error
from relay.normalize.types import (
    OTHER_ERROR,
    OTHER_RETAIN,
    SKIP_DEEP,
    SKIP_EMPTY,
    SKIP_NEVER,
    ArrayKind,
    Field,
    Kind,
    MapKind,
    Struct,
    register_prims,
)

register_prims(
    {
        "str": p.to_str,
        "lstr": p.lenient_str,
        "jlstr": p.json_lenient_str,
        "bool": p.to_bool,
        "u64": p.to_u64,
        "i64": p.to_i64,
        "f64": p.to_f64,
        "ff64": p.to_finite_f64,
        "ts": p.to_timestamp,
        "eid": p.to_event_id,
        "uuid": p.to_uuid,
        "tid": p.to_trace_id,
        "sid": p.to_span_id,
        "ip": p.to_ip,
        "level": p.to_level,
        "etype": p.to_event_type,
        "status": p.to_span_status,
        "thread_id": p.to_thread_id,
        "addr": p.to_addr,
        "value": p.any_value,
    }
)


def _params(value: object, meta: dict[str, object], key: str) -> object:
    """Log entry parameters are a list (positional) or an object (named)."""
    if value is None or type(value) in (list, dict):
        return value
    set_error(meta, key, expected("message parameters"), value)
    return None


F: Final = Field
E: Final = SKIP_EMPTY
OBJ: Final = MapKind("value")
STRS: Final = ArrayKind("str")

FRAME: Final = Struct(
    "Frame",
    [
        F("function", "str", skip=E, max_chars=512),
        F("raw_function", "str", skip=E, max_chars=512),
        F("symbol", "str", max_chars=512),
        F("module", "str", skip=E),
        F("package", "str", skip=E),
        F("filename", "str", skip=E, max_chars=256),
        F("file_revision", "str", skip=E),
        F("abs_path", "str", skip=E, max_chars=256),
        F("lineno", "u64"),
        F("colno", "u64"),
        F("platform", "str", skip=E),
        F("pre_context", STRS, skip=E),
        F("context_line", "str"),
        F("parent_index", "i64"),
        F("sample_count", "u64"),
        F("post_context", STRS, skip=E),
        F("in_app", "bool"),
        F("vars", "value"),
        F("data", OBJ, skip=E),
        F("image_addr", "addr"),
        F("instruction_addr", "addr"),
        F("addr_mode", "str", skip=E),
        F("function_id", "addr", skip=E),
        F("symbol_addr", "addr"),
        F("trust", "str", max_chars=128),
        F("lang", "str", max_chars=128),
        F("stack_start", "bool"),
        F("lock", OBJ),
    ],
)

STACKTRACE: Final = Struct(
    "Stacktrace",
    [
        F("frames", ArrayKind(FRAME), skip=E, required=True, nonempty=True),
        F("registers", OBJ),
        F("instruction_addr_adjustment", "str"),
        F("lang", "str", max_chars=128),
        F("snapshot", "bool"),
    ],
    expect="rawstacktrace",
)

MECHANISM_META: Final = Struct(
    "MechanismMeta",
    [
        F("errno", Struct("CError", [F("number", "i64"), F("name", "str")])),
        F(
            "signal",
            Struct(
                "PosixSignal",
                [F("number", "i64"), F("code", "i64"), F("name", "str"), F("code_name", "str")],
            ),
        ),
        F(
            "mach_exception",
            Struct(
                "MachException",
                [F("exception", "i64"), F("code", "u64"), F("subcode", "u64"), F("name", "str")],
            ),
        ),
        F("ns_error", Struct("NsError", [F("code", "i64"), F("domain", "str")])),
    ],
)

MECHANISM: Final = Struct(
    "Mechanism",
    [
        F("type", "str", required=True, nonempty=True, max_chars=128),
        F("synthetic", "bool"),
        F("description", "str", max_chars=8192),
        F("help_link", "str", nonempty=True, max_chars=256),
        F("handled", "bool"),
        F("source", "str", nonempty=True, max_chars=128, chars="^ \t\r\n"),
        F("is_exception_group", "bool"),
        F("exception_id", "u64"),
        F("parent_id", "u64"),
        F("data", OBJ, skip=E),
        F("meta", MECHANISM_META, skip=E),
    ],
)

EXCEPTION: Final = Struct(
    "Exception",
    [
        F("type", "str", max_chars=256),
        F("value", "jlstr", max_chars=8192),
        F("module", "str", max_chars=256),
        F("stacktrace", STACKTRACE, skip=E),
        F("raw_stacktrace", STACKTRACE, skip=E),
        F("thread_id", "thread_id", max_chars=128),
        F("mechanism", MECHANISM),
    ],
    aliases={"sentry.interfaces.Stacktrace": "stacktrace"},
)

THREAD: Final = Struct(
    "Thread",
    [
        F("id", "thread_id", max_chars=256),
        F("name", "str", max_chars=1024),
        F("stacktrace", STACKTRACE, skip=E),
        F("raw_stacktrace", STACKTRACE, skip=E),
        F("crashed", "bool"),
        F("current", "bool"),
        F("main", "bool"),
        F("state", "str", skip=E),
        F("held_locks", OBJ),
    ],
)

BREADCRUMB: Final = Struct(
    "Breadcrumb",
    [
        F("timestamp", "ts"),
        F("type", "str", max_chars=128),
        F("category", "str", max_chars=128),
        F("level", "level"),
        F("message", "str", max_chars=8192),
        F("data", OBJ, skip=E),
        F("event_id", "eid"),
        F("origin", "str", skip=E),
    ],
    other=OTHER_ERROR,
    aliases={"ty": "type"},
)

LOGENTRY: Final = Struct(
    "LogEntry",
    [
        F("message", "str", max_chars=8192),
        F("formatted", "str", max_chars=8192),
        F("params", Kind("params", _params)),
    ],
)

GEO: Final = Struct(
    "Geo",
    [
        F("country_code", "str", max_chars=102),
        F("city", "str", max_chars=1024),
        F("subdivision", "str", max_chars=1024),
        F("region", "str", max_chars=1024),
    ],
)

USER: Final = Struct(
    "User",
    [
        F("id", "lstr", skip=E, max_chars=128),
        F("email", "str", skip=E, max_chars=75),
        F("ip_address", "ip", skip=E),
        F("username", "lstr", skip=E, max_chars=128),
        F("name", "str", skip=E, max_chars=128),
        F("sentry_user", "str", skip=E),
        F("geo", GEO, skip=E),
        F("segment", "str", skip=E),
        F("data", OBJ, skip=E),
    ],
)

REQUEST: Final = Struct(
    "Request",
    [
        F("url", "str", max_chars=256),
        F("method", "str"),
        F("protocol", "str"),
        F("data", "value"),
        F("query_string", QUERY, skip=E),
        F("fragment", "str", skip=E, max_chars=1024),
        F("cookies", COOKIES, skip=E),
        F("headers", HEADERS, skip=E),
        F("body_size", "u64"),
        F("env", OBJ, skip=E),
        F("inferred_content_type", "str", skip=E),
        F("api_target", "str"),
    ],
)

SDK_PACKAGE: Final = Struct("ClientSdkPackage", [F("name", "str"), F("version", "str")])

CLIENT_SDK: Final = Struct(
    "ClientSdkInfo",
    [
        F("name", "str", required=True, max_chars=256),
        F("version", "str", required=True, max_chars=256),
        F("integrations", STRS, skip=SKIP_DEEP),
        F("features", STRS, skip=SKIP_DEEP),
        F("packages", ArrayKind(SDK_PACKAGE), skip=SKIP_DEEP),
        F("client_ip", "ip", skip=E),
        F("settings", Struct("ClientSdkSettings", [F("infer_ip", "str")]), skip=E),
    ],
)

DEBUG_META: Final = Struct(
    "DebugMeta",
    [
        F("sdk_info", OBJ, skip=E),
        F("images", ArrayKind("value"), skip=E),
    ],
)

TEMPLATE: Final = Struct(
    "TemplateInfo",
    [
        F("filename", "str", max_chars=128),
        F("abs_path", "str", max_chars=256),
        F("lineno", "u64"),
        F("colno", "u64"),
        F("pre_context", STRS),
        F("context_line", "str"),
        F("post_context", STRS),
    ],
)

TRANSACTION_INFO: Final = Struct(
    "TransactionInfo",
    [
        F("source", "str"),
        F("original", "str", max_chars=200, trim_ws=True),
        F("changes", ArrayKind(OBJ)),
        F("propagations", "u64"),
    ],
)

MEASUREMENT: Final = Struct(
    "Measurement",
    [F("value", "ff64", required=True, skip=SKIP_NEVER), F("unit", p.to_metric_unit)],
)
#: ``Measurements``: an object of measurements whose names are validated and lowercased.
MEASUREMENTS = MapKind(MEASUREMENT)
MEASUREMENTS.conv = named_map_converter(MEASUREMENTS.conv, "measurement", lowercase=True)
MEASUREMENTS.name = "measurements"

SPAN: Final = Struct(
    "Span",
    [
        F("timestamp", "ts", required=True),
        F("start_timestamp", "ts", required=True),
        F("exclusive_time", "f64"),
        F("op", "str", max_chars=128),
        F("span_id", "sid", required=True),
        F("parent_span_id", "sid"),
        F("trace_id", "tid", required=True),
        F("segment_id", "sid"),
        F("is_segment", "bool"),
        F("is_remote", "bool"),
        F("status", "status"),
        F("description", "str"),
        F("tags", MapKind("jlstr")),
        F("origin", "str", max_chars=128, chars="a-zA-Z0-9_."),
        F("profile_id", "eid"),
        F("data", OBJ),
        F("links", ArrayKind(OBJ)),
        F("sentry_tags", OBJ),
        F("received", "ts"),
        F("measurements", MEASUREMENTS, skip=E),
        F("platform", "str", skip=E),
        F("was_transaction", "bool", skip=E),
        F("kind", "str", skip=E),
    ],
)

#: ``Breakdowns``: measurements by breakdown name (names validated, not lowercased).
BREAKDOWNS = MapKind(MEASUREMENTS)
BREAKDOWNS.conv = named_map_converter(BREAKDOWNS.conv, "breakdown", lowercase=False)
BREAKDOWNS.name = "breakdowns"

_R: Final = OTHER_RETAIN


def _ctx(name: str, fields: list[Field]) -> Struct:
    return Struct(name, [*fields, F("type", "str")], other=_R)


CONTEXT_TYPES: Final[dict[str, Struct]] = {
    "device": _ctx(
        "DeviceContext",
        [
            F("name", "str"),
            F("family", "str"),
            F("model", "str"),
            F("model_id", "str"),
            F("arch", "str"),
            F("battery_level", "f64"),
            F("orientation", "str"),
            F("manufacturer", "str"),
            F("brand", "str"),
            F("screen_resolution", "str"),
            F("screen_width_pixels", "u64"),
            F("screen_height_pixels", "u64"),
            F("screen_density", "f64"),
            F("screen_dpi", "u64"),
            F("online", "bool"),
            F("charging", "bool"),
            F("low_memory", "bool"),
            F("simulator", "bool"),
            F("memory_size", "u64"),
            F("free_memory", "u64"),
            F("usable_memory", "u64"),
            F("storage_size", "u64"),
            F("free_storage", "u64"),
            F("external_storage_size", "u64"),
            F("external_free_storage", "u64"),
            F("boot_time", "str"),
            F("timezone", "str"),
            F("locale", "str"),
            F("processor_count", "u64"),
            F("cpu_description", "str"),
            F("processor_frequency", "u64"),
            F("device_type", "str"),
            F("battery_status", "str"),
            F("device_unique_identifier", "str"),
            F("supports_vibration", "bool"),
            F("supports_accelerometer", "bool"),
            F("supports_gyroscope", "bool"),
            F("supports_audio", "bool"),
            F("supports_location_service", "bool"),
            F("uuid", "uuid"),
        ],
    ),
    "os": _ctx(
        "OsContext",
        [
            F("os", "str"),
            F("name", "str"),
            F("version", "str"),
            F("build", "lstr"),
            F("kernel_version", "str"),
            F("rooted", "bool"),
            F("distribution_name", "str"),
            F("distribution_version", "str"),
            F("distribution_pretty_name", "str"),
            F("raw_description", "str"),
        ],
    ),
    "runtime": _ctx(
        "RuntimeContext",
        [
            F("runtime", "str"),
            F("name", "str"),
            F("version", "str"),
            F("build", "lstr"),
            F("raw_description", "str"),
        ],
    ),
    "app": _ctx(
        "AppContext",
        [
            F("app_start_time", "str"),
            F("device_app_hash", "str"),
            F("build_type", "str"),
            F("app_identifier", "str"),
            F("app_name", "str"),
            F("app_version", "str"),
            F("app_build", "lstr"),
            F("app_memory", "u64"),
            F("in_foreground", "bool"),
            F("view_names", STRS, skip=E),
        ],
    ),
    "browser": _ctx("BrowserContext", [F("browser", "str"), F("name", "str"), F("version", "str")]),
    "gpu": _ctx(
        "GpuContext",
        [
            F("name", "str"),
            F("version", "str"),
            F("id", "value"),
            F("vendor_id", "str"),
            F("vendor_name", "str"),
            F("driver_version", "str"),
            F("memory_size", "u64"),
            F("api_type", "str"),
            F("multi_threaded_rendering", "bool"),
            F("npot_support", "str"),
            F("max_texture_size", "u64"),
            F("graphics_shader_level", "str"),
            F("supports_draw_call_instancing", "bool"),
            F("supports_ray_tracing", "bool"),
            F("supports_compute_shaders", "bool"),
            F("supports_geometry_shaders", "bool"),
        ],
    ),
    "trace": _ctx(
        "TraceContext",
        [
            F("trace_id", "tid", required=True),
            F("span_id", "sid", required=True),
            F("parent_span_id", "sid"),
            F("op", "str", max_chars=128),
            F("status", "status"),
            F("exclusive_time", "f64"),
            F("client_sample_rate", "f64"),
            F("origin", "str", max_chars=128, chars="a-zA-Z0-9_."),
            F("sampled", "bool"),
            F("data", OBJ),
            F("links", ArrayKind(OBJ)),
        ],
    ),
    "profile": _ctx("ProfileContext", [F("profile_id", "eid"), F("profiler_id", "eid")]),
    "replay": _ctx("ReplayContext", [F("replay_id", "eid")]),
    "response": _ctx(
        "ResponseContext",
        [
            F("cookies", COOKIES, skip=E),
            F("headers", HEADERS, skip=E),
            F("status_code", "u64"),
            F("body_size", "u64"),
            F("data", "value"),
            F("inferred_content_type", "str", skip=E),
        ],
    ),
    "culture": _ctx(
        "CultureContext",
        [
            F("calendar", "str"),
            F("display_name", "str"),
            F("locale", "str"),
            F("is_24_hour_format", "bool"),
            F("timezone", "str"),
        ],
    ),
    "feedback": _ctx("UserReportV2Context", [F("message", "str"), F("contact_email", "str")]),
    "unity": _ctx(
        "UnityContext",
        [
            F("copy_texture_support", "str"),
            F("editor_version", "str"),
            F("install_mode", "str"),
            F("rendering_threading_mode", "str"),
            F("target_frame_rate", "str"),
        ],
    ),
}

CONTEXTS: Final = ContextsKind(CONTEXT_TYPES)

RELAY_INFO: Final = Struct(
    "RelayInfo",
    [F("version", "str", required=True, max_chars=256), F("public_key", "str", max_chars=256)],
)

PROCESSING_ERROR: Final = Struct(
    "EventProcessingError",
    [F("type", "str", required=True), F("name", "str"), F("value", "value")],
    other=_R,
)

EVENT = Struct(
    "Event",
    [
        F("event_id", "eid"),
        F("level", "level"),
        F("version", "str"),
        F("type", "etype"),
        F("fingerprint", FINGERPRINT, skip=E),
        F("culprit", "str", max_chars=200),
        F("transaction", "str", max_chars=200, trim_ws=True),
        F("transaction_info", TRANSACTION_INFO),
        F("time_spent", "u64"),
        F("logentry", LOGENTRY, skip=E),
        F("logger", "str", max_chars=64, chars="^\r\n"),
        F("modules", MapKind("str"), skip=SKIP_DEEP),
        F("platform", "str"),
        F("timestamp", "ts"),
        F("start_timestamp", "ts"),
        F("received", "ts"),
        F("server_name", "str", max_chars=256),
        F("release", "lstr", max_chars=200, trim_ws=True, nonempty=True, skip=E),
        F("dist", "str", trim_ws=True, nonempty=True, chars="a-zA-Z0-9_.-"),
        F("environment", "str", max_chars=64, nonempty=True, trim_ws=True),
        F("site", "str", max_chars=256),
        F("user", USER, skip=E),
        F("request", REQUEST, skip=E),
        F("contexts", CONTEXTS),
        F("breadcrumbs", ValuesKind(BREADCRUMB), skip=E),
        F("exception", ValuesKind(EXCEPTION), skip=E),
        F("stacktrace", STACKTRACE, skip=E),
        F("template", TEMPLATE),
        F("threads", ValuesKind(THREAD), skip=E),
        F("tags", TAGS, skip=E),
        F("extra", OBJ, skip=E),
        F("debug_meta", DEBUG_META, skip=E),
        F("sdk", CLIENT_SDK, skip=E),
        F("ingest_path", ArrayKind(RELAY_INFO), skip=E),
        F("errors", ArrayKind(PROCESSING_ERROR), skip=SKIP_DEEP),
        F("key_id", "str"),
        F("project", "u64"),
        F("grouping_config", OBJ),
        F("checksum", "str", max_chars=128),
        F("csp", OBJ),
        F("spans", ArrayKind(SPAN)),
        F("measurements", MEASUREMENTS, skip=E),
        F("breakdowns", BREAKDOWNS, skip=E),
        F("scraping_attempts", "value"),
        F("_metrics", OBJ),
        F("_dsc", "value"),
        F("_performance_issues_spans", "bool", skip=E),
    ],
    other=OTHER_ERROR,
    aliases={
        "sentry.interfaces.Message": "logentry",
        "message": "logentry",
        "sentry.interfaces.User": "user",
        "sentry.interfaces.Http": "request",
        "sentry.interfaces.Contexts": "contexts",
        "sentry.interfaces.Breadcrumbs": "breadcrumbs",
        "sentry.interfaces.Exception": "exception",
        "sentry.interfaces.Stacktrace": "stacktrace",
        "sentry.interfaces.Template": "template",
        "sentry.interfaces.Csp": "csp",
    },
)


def _logentry_from_string(value: object, meta: dict[str, object], key: str) -> object:
    """A bare string (``"message": "..."``) is a log entry's formatted text; other non-object
    values (except ``false``) are formatted as JSON."""
    if type(value) is str:
        return {"formatted": value}
    if value is False:
        # Old SDKs send ``"message": false`` for "no message": Relay drops it silently.
        return None
    if value is not None and type(value) is not dict:
        return {"formatted": p.json_dumps_compact(value)}
    return LOGENTRY_CONV(value, meta, key)


LOGENTRY_CONV: Final = LOGENTRY.conv
EVENT.by_name["logentry"].conv = _logentry_from_string
