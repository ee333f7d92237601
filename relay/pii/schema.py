"""The event schema as the scrubber sees it: value types and PII levels of every field.

This mirrors the `pii = "true" | "maybe" | "false"` attributes and value types of Relay's
event protocol. Rules that shape the table (why it looks the way it does):

* A struct field is PII-able only if it says so; there is no inheritance from the parent.
* Children of arrays, objects and pair lists inherit the PII level of their container.
* Additional properties (`other`) carry the level declared on the `other` field.
* A struct's value type comes from its schema type (`$frame`, `$user`, ...); plain
  structs have none, so selectors can only address them by key.
* Some fields compute their level from sentry-conventions (span data, attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from relay.pii.value_types import ARRAY, BOOLEAN, DATETIME, NUMBER, OBJECT, STRING, Pii, vt

# Node kinds (integers: the walker dispatches on them in its hot loop).
K_STRING: Final = 0
K_NUMBER: Final = 1
K_BOOL: Final = 2
K_OPAQUE: Final = 3  # scalar the scrubber cannot look into (ids, enums, timestamps)
K_VALUE: Final = 4  # arbitrary JSON
K_ARRAY: Final = 5
K_OBJECT: Final = 6
K_PAIRS: Final = 7  # pair list: [[key, value], ...], entered by key
K_STRUCT: Final = 8
K_PATH: Final = 9  # native image path: the basename is never scrubbed
K_WRAP: Final = 10  # newtype that re-declares the PII level of its content
K_CONTEXTS: Final = 11
K_TAGGED: Final = 12  # enum chosen by a "type" field (debug images)
K_ATTRIBUTES: Final = 13

# Dynamic PII levels (computed from sentry-conventions at run time).
DYN_SPAN_DATA: Final = 10
DYN_ATTRIBUTE: Final = 11

T, F, M = Pii.TRUE, Pii.FALSE, Pii.MAYBE


@dataclass(eq=False, slots=True)
class Node:
    """One schema type. Only the attributes relevant to `kind` are used."""

    kind: int
    vt: int = 0
    item: Node | None = None  # element / value / wrapped node
    fields: dict[str, tuple[Node, int]] = field(default_factory=dict)
    other: int | None = None  # PII level of additional properties, None: not allowed
    pii: int | None = None  # K_WRAP: PII level of the content
    variants: dict[str, Node] = field(default_factory=dict)  # K_TAGGED / contexts
    fallback: Node | None = None
    is_user: bool = False
    name: str = ""


STR: Final = Node(K_STRING, STRING)
NUM: Final = Node(K_NUMBER, NUMBER)
BOOL: Final = Node(K_BOOL, BOOLEAN)
TIME: Final = Node(K_OPAQUE, DATETIME)
OPAQUE: Final = Node(K_OPAQUE, 0)
VALUE: Final = Node(K_VALUE)
PATH: Final = Node(K_PATH, STRING)
MESSAGE: Final = Node(K_STRING, vt("message") | STRING)


def arr(item: Node) -> Node:
    """Array of `item`."""
    return Node(K_ARRAY, ARRAY, item=item)


def obj(item: Node) -> Node:
    """Object (string keys) of `item`."""
    return Node(K_OBJECT, OBJECT, item=item)


def pairs(item: Node = STR) -> Node:
    """Pair list (tags, headers, cookies, query strings)."""
    return Node(K_PAIRS, OBJECT, item=item)


def struct(
    name: str,
    fields: dict[str, Node | tuple[Node, int]],
    other: int | None = None,
    value_type: str | None = None,
    default_pii: int = F,
    is_user: bool = False,
) -> Node:
    """A schema struct; `default_pii` is a type-level `pii` that fields inherit."""
    resolved: dict[str, tuple[Node, int]] = {}
    for key, spec in fields.items():
        resolved[key] = spec if isinstance(spec, tuple) else (spec, default_pii)
    return Node(
        K_STRUCT,
        vt(value_type) if value_type else 0,
        fields=resolved,
        other=other,
        is_user=is_user,
        name=name,
    )


def wrap(item: Node, pii: int, value_type: int) -> Node:
    """Newtype whose content has its own PII level (runs the container check twice)."""
    return Node(K_WRAP, value_type, item=item, pii=pii)


# -- leaf structs ----------------------------------------------------------------------------

MEASUREMENTS: Final = obj(struct("Measurement", {"value": NUM, "unit": OPAQUE}))
SPAN_DATA: Final = struct("SpanData", {}, other=DYN_SPAN_DATA)
SPAN_LINK: Final = struct(
    "SpanLink",
    {
        "trace_id": OPAQUE,
        "span_id": OPAQUE,
        "sampled": BOOL,
        "attributes": (obj(VALUE), M),
    },
    other=M,
)
GEO: Final = struct(
    "Geo",
    {"country_code": (STR, T), "city": (STR, T), "subdivision": (STR, T), "region": (STR, T)},
    other=F,
)
USER: Final = struct(
    "User",
    {
        "id": (STR, T),
        "email": (STR, T),
        "ip_address": (STR, T),
        "username": (STR, T),
        "name": (STR, T),
        "sentry_user": (STR, T),
        "geo": GEO,
        "segment": STR,
        "data": (obj(VALUE), T),
    },
    other=T,
    value_type="user",
    is_user=True,
)
REQUEST: Final = struct(
    "Request",
    {
        "url": (STR, M),
        "method": STR,
        "protocol": STR,
        "data": (VALUE, T),
        "query_string": (pairs(), T),
        "fragment": (STR, T),
        "cookies": (pairs(), T),
        "headers": (pairs(), T),
        "body_size": NUM,
        "env": (obj(VALUE), T),
        "inferred_content_type": STR,
        "api_target": STR,
    },
    other=T,
    value_type="http",
)
LOCK_REASON: Final = struct(
    "LockReason",
    {
        "type": OPAQUE,
        "address": STR,
        "package_name": STR,
        "class_name": STR,
        "thread_id": OPAQUE,
    },
    other=F,
)
FRAME: Final = struct(
    "Frame",
    {
        "function": STR,
        "raw_function": STR,
        "symbol": STR,
        "module": (STR, M),
        "package": STR,
        "filename": (PATH, M),
        "file_revision": (STR, M),
        "abs_path": (PATH, M),
        "lineno": NUM,
        "colno": NUM,
        "platform": STR,
        "pre_context": arr(STR),
        "context_line": STR,
        "parent_index": NUM,
        "sample_count": NUM,
        "post_context": arr(STR),
        "in_app": BOOL,
        "vars": (obj(VALUE), T),
        "data": struct("FrameData", {}, other=F),
        "image_addr": OPAQUE,
        "instruction_addr": OPAQUE,
        "addr_mode": STR,
        "function_id": OPAQUE,
        "symbol_addr": OPAQUE,
        "trust": STR,
        "lang": STR,
        "stack_start": BOOL,
        "lock": LOCK_REASON,
    },
    other=F,
    value_type="frame",
)
STACKTRACE: Final = struct(
    "Stacktrace",
    {
        "frames": arr(FRAME),
        "registers": obj(OPAQUE),
        "instruction_addr_adjustment": OPAQUE,
        "lang": STR,
        "snapshot": BOOL,
    },
    other=F,
    value_type="stack",
)
MECHANISM: Final = struct(
    "Mechanism",
    {
        "type": STR,
        "synthetic": BOOL,
        "description": (STR, T),
        "help_link": STR,
        "handled": BOOL,
        "source": STR,
        "is_exception_group": BOOL,
        "exception_id": NUM,
        "parent_id": NUM,
        "data": (obj(VALUE), T),
        "meta": struct(
            "MechanismMeta",
            {
                "errno": struct("CError", {"number": NUM, "name": STR}),
                "signal": struct(
                    "PosixSignal", {"number": NUM, "code": NUM, "name": STR, "code_name": STR}
                ),
                "mach_exception": struct(
                    "MachException",
                    {"exception": NUM, "code": NUM, "subcode": NUM, "name": STR},
                ),
                "ns_error": struct("NsError", {"code": NUM, "domain": STR}),
            },
            other=F,
        ),
    },
    other=F,
)
EXCEPTION: Final = struct(
    "Exception",
    {
        "type": STR,
        "value": (STR, T),
        "module": STR,
        "stacktrace": STACKTRACE,
        "raw_stacktrace": STACKTRACE,
        "thread_id": OPAQUE,
        "mechanism": MECHANISM,
    },
    other=F,
    value_type="error",
)
THREAD: Final = struct(
    "Thread",
    {
        "id": OPAQUE,
        "name": STR,
        "stacktrace": STACKTRACE,
        "raw_stacktrace": STACKTRACE,
        "crashed": BOOL,
        "current": BOOL,
        "main": BOOL,
        "state": STR,
        "held_locks": obj(LOCK_REASON),
    },
    other=F,
    value_type="thread",
)
BREADCRUMB: Final = struct(
    "Breadcrumb",
    {
        "timestamp": TIME,
        "type": STR,
        "category": STR,
        "level": OPAQUE,
        "message": (STR, T),
        "data": (obj(VALUE), T),
        "event_id": OPAQUE,
        "origin": STR,
    },
    other=F,
    value_type="breadcrumb",
)
LOGENTRY: Final = struct(
    "LogEntry",
    {"message": MESSAGE, "formatted": (MESSAGE, T), "params": (VALUE, T)},
    other=T,
    value_type="logentry",
)
CLIENT_SDK: Final = struct(
    "ClientSdkInfo",
    {
        "name": STR,
        "version": STR,
        "integrations": arr(STR),
        "features": arr(STR),
        "packages": arr(struct("ClientSdkPackage", {"name": STR, "version": STR})),
        "client_ip": (STR, T),
        "settings": struct("ClientSdkSettings", {"infer_ip": OPAQUE}),
    },
    other=F,
    value_type="sdk",
)
_USER_TAGS: Final = ("user", "user.id", "user.ip", "user.username", "user.email")
SENTRY_TAGS: Final = struct(
    "SentryTags",
    {
        name: (STR, T if name in _USER_TAGS else M)
        for name in [
            "release",
            "user",
            "user.id",
            "user.ip",
            "user.username",
            "user.email",
            "environment",
            "transaction.method",
            "transaction.op",
            "browser.name",
            "sdk.name",
            "sdk.version",
            "platform",
            "mobile",
            "device.class",
            "device.family",
            "device.arch",
            "device.battery_level",
            "device.brand",
            "device.charging",
            "device.locale",
            "device.model_id",
            "device.name",
            "device.online",
            "device.orientation",
            "device.screen_density",
            "device.screen_dpi",
            "device.screen_height_pixels",
            "device.screen_width_pixels",
            "device.simulator",
            "device.uuid",
            "app.device",
            "device.model",
            "runtime",
            "runtime.name",
            "browser",
            "os",
            "os.rooted",
            "gpu.name",
            "gpu.vendor",
            "monitor.id",
            "monitor.slug",
            "request.url",
            "request.method",
            "os.name",
            "action",
            "category",
            "description",
            "domain",
            "raw_domain",
            "group",
            "http.decoded_response_content_length",
            "http.response_content_length",
            "http.response_transfer_size",
            "resource.render_blocking_status",
            "op",
            "status",
            "status_code",
            "system",
            "ttid",
            "ttfd",
            "file_extension",
            "main_thread",
            "app_start_type",
            "replay_id",
            "cache.hit",
            "cache.key",
            "trace.status",
            "messaging.destination.name",
            "messaging.message.id",
            "messaging.operation.name",
            "messaging.operation.type",
            "thread.name",
            "thread.id",
            "profiler_id",
            "user.geo.city",
            "user.geo.country_code",
            "user.geo.region",
            "user.geo.subdivision",
            "user.geo.subregion",
            "name",
        ]
    },
)
SPAN: Final = struct(
    "Span",
    {
        "timestamp": TIME,
        "start_timestamp": TIME,
        "exclusive_time": NUM,
        "op": STR,
        "span_id": OPAQUE,
        "parent_span_id": OPAQUE,
        "trace_id": OPAQUE,
        "segment_id": OPAQUE,
        "is_segment": BOOL,
        "is_remote": BOOL,
        "status": OPAQUE,
        "description": (STR, M),
        "tags": (obj(STR), M),
        "origin": STR,
        "profile_id": OPAQUE,
        "data": (SPAN_DATA, T),
        "links": (arr(SPAN_LINK), M),
        "sentry_tags": SENTRY_TAGS,
        "received": TIME,
        "measurements": MEASUREMENTS,
        "platform": STR,
        "was_transaction": BOOL,
        "kind": OPAQUE,
    },
    other=M,
    value_type="span",
)

# -- contexts --------------------------------------------------------------------------------


def _ctx(name: str, fields: dict[str, Node | tuple[Node, int]], other: int | None = M) -> Node:
    return struct(name, fields, other=other)


_MAYBE_STR: Final = (STR, M)
_MAYBE_NUM: Final = (NUM, M)
CONTEXT_TYPES: Final[dict[str, Node]] = {
    "device": _ctx(
        "DeviceContext",
        {
            "name": _MAYBE_STR,
            "family": STR,
            "model": STR,
            "model_id": STR,
            "arch": STR,
            "battery_level": NUM,
            "orientation": STR,
            "manufacturer": STR,
            "brand": STR,
            "screen_resolution": _MAYBE_STR,
            "screen_width_pixels": _MAYBE_NUM,
            "screen_height_pixels": _MAYBE_NUM,
            "screen_density": _MAYBE_NUM,
            "screen_dpi": _MAYBE_NUM,
            "online": BOOL,
            "charging": BOOL,
            "low_memory": BOOL,
            "simulator": BOOL,
            "memory_size": _MAYBE_NUM,
            "free_memory": _MAYBE_NUM,
            "usable_memory": _MAYBE_NUM,
            "storage_size": _MAYBE_NUM,
            "free_storage": _MAYBE_NUM,
            "external_storage_size": _MAYBE_NUM,
            "external_free_storage": _MAYBE_NUM,
            "boot_time": _MAYBE_STR,
            "timezone": _MAYBE_STR,
            "locale": _MAYBE_STR,
            "processor_count": NUM,
            "cpu_description": _MAYBE_STR,
            "processor_frequency": NUM,
            "device_type": _MAYBE_STR,
            "battery_status": _MAYBE_STR,
            "device_unique_identifier": (STR, T),
            "supports_vibration": BOOL,
            "supports_accelerometer": BOOL,
            "supports_gyroscope": BOOL,
            "supports_audio": BOOL,
            "supports_location_service": BOOL,
            "uuid": (OPAQUE, M),
        },
    ),
    "os": _ctx(
        "OsContext",
        {
            "os": STR,
            "name": STR,
            "version": STR,
            "build": _MAYBE_STR,
            "kernel_version": _MAYBE_STR,
            "rooted": BOOL,
            "distribution_name": _MAYBE_STR,
            "distribution_version": _MAYBE_STR,
            "distribution_pretty_name": _MAYBE_STR,
            "raw_description": _MAYBE_STR,
        },
    ),
    "runtime": _ctx(
        "RuntimeContext",
        {
            "runtime": STR,
            "name": STR,
            "version": STR,
            "build": _MAYBE_STR,
            "raw_description": _MAYBE_STR,
        },
    ),
    "app": _ctx(
        "AppContext",
        {
            "app_start_time": _MAYBE_STR,
            "device_app_hash": _MAYBE_STR,
            "build_type": STR,
            "app_identifier": STR,
            "app_name": STR,
            "app_version": STR,
            "app_build": STR,
            "app_memory": NUM,
            "in_foreground": BOOL,
            "view_names": arr(STR),
        },
    ),
    "browser": _ctx("BrowserContext", {"browser": STR, "name": STR, "version": STR}),
    "gpu": _ctx(
        "GpuContext",
        {
            "name": _MAYBE_STR,
            "version": _MAYBE_STR,
            "id": (VALUE, M),
            "vendor_id": _MAYBE_STR,
            "vendor_name": _MAYBE_STR,
            "driver_version": _MAYBE_STR,
            "memory_size": _MAYBE_NUM,
            "api_type": _MAYBE_STR,
            "multi_threaded_rendering": (BOOL, M),
            "npot_support": _MAYBE_STR,
            "max_texture_size": NUM,
            "graphics_shader_level": STR,
            "supports_draw_call_instancing": BOOL,
            "supports_ray_tracing": BOOL,
            "supports_compute_shaders": BOOL,
            "supports_geometry_shaders": BOOL,
        },
    ),
    "trace": _ctx(
        "TraceContext",
        {
            "trace_id": OPAQUE,
            "span_id": OPAQUE,
            "parent_span_id": OPAQUE,
            "op": STR,
            "status": OPAQUE,
            "exclusive_time": NUM,
            "client_sample_rate": NUM,
            "origin": STR,
            "sampled": BOOL,
            "data": (SPAN_DATA, M),
            "links": (arr(SPAN_LINK), M),
        },
    ),
    "profile": _ctx("ProfileContext", {"profile_id": OPAQUE, "profiler_id": OPAQUE}, None),
    "replay": _ctx("ReplayContext", {"replay_id": OPAQUE}, F),
    "flags": _ctx(
        "FlagsContext",
        {"values": arr(_ctx("FlagsContextItem", {"flag": STR, "result": VALUE}))},
    ),
    "feedback": _ctx("UserReportV2Context", {"message": STR, "contact_email": STR}, F),
    "memory_info": _ctx(
        "MemoryInfoContext",
        {
            name: (arr(NUM) if name == "pause_durations" else BOOL)
            if name in ("compacted", "concurrent", "pause_durations")
            else NUM
            for name in [
                "allocated_bytes",
                "compacted",
                "concurrent",
                "finalization_pending_count",
                "fragmented_bytes",
                "heap_size_bytes",
                "high_memory_load_threshold_bytes",
                "index",
                "memory_load_bytes",
                "pause_durations",
                "pause_time_percentage",
                "pinned_objects_count",
                "promoted_bytes",
                "total_allocated_bytes",
                "total_available_memory_bytes",
                "total_committed_bytes",
            ]
        },
    ),
    "monitor": wrap(obj(VALUE), M, OBJECT),
    "reprocessing": _ctx(
        "ReprocessingContext", {"original_issue_id": NUM, "original_primary_hash": STR}, F
    ),
    "response": _ctx(
        "ResponseContext",
        {
            "cookies": (pairs(), T),
            "headers": (pairs(), T),
            "status_code": NUM,
            "body_size": NUM,
            "data": (VALUE, T),
            "inferred_content_type": STR,
        },
    ),
    "otel": _ctx("OtelContext", {}),
    "cloudresource": _ctx(
        "CloudResourceContext",
        {
            "cloud.account.id": _MAYBE_STR,
            "cloud.provider": STR,
            "cloud.platform": STR,
            "cloud.region": STR,
            "cloud.availability_zone": STR,
            "host.id": _MAYBE_STR,
            "host.type": STR,
        },
    ),
    "culture": _ctx(
        "CultureContext",
        {
            "calendar": _MAYBE_STR,
            "display_name": _MAYBE_STR,
            "locale": _MAYBE_STR,
            "is_24_hour_format": (BOOL, M),
            "timezone": _MAYBE_STR,
        },
    ),
    "performancescore": _ctx("PerformanceScoreContext", {"score_profile_version": STR}, F),
    "spring": _ctx("SpringContext", {"active_profiles": arr(STR)}),
    "threadpool_info": _ctx(
        "ThreadPoolInfoContext",
        {
            name: NUM
            for name in [
                "available_worker_threads",
                "available_completion_port_threads",
                "max_worker_threads",
                "max_completion_port_threads",
                "min_worker_threads",
                "min_completion_port_threads",
            ]
        },
    ),
    "otaupdates": _ctx(
        "OTAUpdatesContext", {"channel": STR, "runtime_version": STR, "update_id": STR}
    ),
    "chromiumstabilityreport": _ctx(
        "StabilityReportContext",
        {
            "process_states": arr(
                struct(
                    "ProcessStateContext",
                    {
                        "process_id": NUM,
                        "memory_state": struct(
                            "MemoryStateContext",
                            {
                                "windows_memory": struct(
                                    "WindowsMemoryContext",
                                    {
                                        "system_commit_limit": NUM,
                                        "system_commit_remaining": NUM,
                                        "system_handle_count": NUM,
                                    },
                                )
                            },
                        ),
                        "file_system_state": struct(
                            "FileSystemStateContext",
                            {
                                "posix_file_system_state": struct(
                                    "PosixFileSystemStateContext", {"open_file_descriptors": NUM}
                                ),
                                "windows_file_system_state": struct(
                                    "WindowsFileSystemStateContext",
                                    {"process_handle_count": NUM},
                                ),
                            },
                        ),
                    },
                )
            ),
            "system_memory_state": struct(
                "SystemMemoryStateContext",
                {
                    "windows_memory": struct(
                        "WindowsMemoryContext",
                        {
                            "system_commit_limit": NUM,
                            "system_commit_remaining": NUM,
                            "system_handle_count": NUM,
                        },
                    )
                },
            ),
        },
        None,
    ),
    "unity": _ctx(
        "UnityContext",
        {
            "copy_texture_support": STR,
            "editor_version": STR,
            "install_mode": STR,
            "rendering_threading_mode": STR,
            "target_frame_rate": STR,
        },
    ),
}
# Unknown context types: a plain object whose content is fully PII-able.
OTHER_CONTEXT: Final = wrap(Node(K_OBJECT, OBJECT, item=VALUE), T, OBJECT)
CONTEXTS: Final = Node(K_CONTEXTS, OBJECT, variants=CONTEXT_TYPES, fallback=OTHER_CONTEXT)

# -- debug images ----------------------------------------------------------------------------

_NATIVE_IMAGE: Final = struct(
    "NativeDebugImage",
    {
        "code_id": OPAQUE,
        "code_file": (PATH, M),
        "debug_id": OPAQUE,
        "debug_file": (PATH, M),
        "debug_checksum": STR,
        "arch": STR,
        "image_addr": OPAQUE,
        "image_size": NUM,
        "image_vmaddr": OPAQUE,
    },
    other=F,
)
DEBUG_IMAGE: Final = Node(
    K_TAGGED,
    0,
    variants={
        "apple": struct(
            "AppleDebugImage",
            {
                "name": STR,
                "arch": STR,
                "cpu_type": NUM,
                "cpu_subtype": NUM,
                "image_addr": OPAQUE,
                "image_size": NUM,
                "image_vmaddr": OPAQUE,
                "uuid": OPAQUE,
            },
            other=F,
        ),
        **{name: _NATIVE_IMAGE for name in ("symbolic", "macho", "elf", "pe", "pe_dotnet", "wasm")},
        "proguard": struct("ProguardDebugImage", {"uuid": OPAQUE}, other=F),
        "sourcemap": struct(
            "SourceMapDebugImage",
            {"code_file": STR, "debug_id": OPAQUE, "debug_file": (STR, M)},
            other=F,
        ),
        "jvm": struct("JvmDebugImage", {"debug_id": OPAQUE}, other=F),
    },
    fallback=Node(K_OBJECT, OBJECT, item=VALUE),
)
DEBUG_META: Final = struct(
    "DebugMeta",
    {
        "sdk_info": struct(
            "SystemSdkInfo",
            {
                "sdk_name": STR,
                "version_major": NUM,
                "version_minor": NUM,
                "version_patchlevel": NUM,
            },
            other=F,
        ),
        "images": arr(DEBUG_IMAGE),
    },
    other=F,
)


def values_of(item: Node) -> Node:
    """Sentry's `{"values": [...]}` wrapper."""
    return struct("Values", {"values": arr(item)}, other=F)


EVENT: Final = struct(
    "Event",
    {
        "event_id": OPAQUE,
        "level": OPAQUE,
        "version": STR,
        "type": OPAQUE,
        "fingerprint": OPAQUE,
        "culprit": (STR, M),
        "transaction": STR,
        "transaction_info": struct(
            "TransactionInfo",
            {
                "source": OPAQUE,
                "original": STR,
                "changes": arr(
                    struct(
                        "TransactionNameChange",
                        {"source": OPAQUE, "propagations": NUM, "timestamp": TIME},
                    )
                ),
                "propagations": NUM,
            },
        ),
        "time_spent": NUM,
        "logentry": LOGENTRY,
        "logger": STR,
        "modules": obj(STR),
        "platform": STR,
        "timestamp": TIME,
        "start_timestamp": TIME,
        "received": TIME,
        "server_name": (STR, T),
        "release": STR,
        "dist": STR,
        "environment": STR,
        "site": STR,
        "user": USER,
        "request": REQUEST,
        "contexts": CONTEXTS,
        "breadcrumbs": values_of(BREADCRUMB),
        "exception": values_of(EXCEPTION),
        "stacktrace": STACKTRACE,
        "template": struct(
            "TemplateInfo",
            {
                "filename": (STR, T),
                "abs_path": (STR, T),
                "lineno": NUM,
                "colno": NUM,
                "pre_context": arr(STR),
                "context_line": STR,
                "post_context": arr(STR),
            },
            other=F,
        ),
        "threads": values_of(THREAD),
        "tags": (pairs(), M),
        "extra": (obj(VALUE), T),
        "debug_meta": DEBUG_META,
        "sdk": CLIENT_SDK,
        "ingest_path": arr(struct("RelayInfo", {"version": STR, "public_key": STR}, other=F)),
        "errors": arr(
            struct("EventProcessingError", {"type": STR, "name": STR, "value": VALUE}, other=M)
        ),
        "key_id": STR,
        "project": NUM,
        "grouping_config": obj(VALUE),
        "checksum": STR,
        "csp": struct(
            "Csp",
            {
                "effective_directive": (STR, T),
                "blocked_uri": (STR, T),
                "document_uri": (STR, T),
                "original_policy": STR,
                "referrer": (STR, T),
                "status_code": NUM,
                "violated_directive": STR,
                "source_file": (STR, M),
                "line_number": NUM,
                "column_number": NUM,
                "script_sample": STR,
                "disposition": STR,
            },
            other=T,
        ),
        "spans": arr(SPAN),
        "measurements": MEASUREMENTS,
        "breakdowns": obj(MEASUREMENTS),
        "scraping_attempts": VALUE,
        "_metrics": OPAQUE,
        "_dsc": VALUE,
        "_performance_issues_spans": BOOL,
    },
    other=T,
    value_type="event",
)
