"""Native crash placeholders and minidump reading (relay.normalize.native, minidump_reader)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from relay.normalize.native import (
    apply_apple_crash_report,
    apply_minidump,
    strip_context_types,
    write_native_placeholder,
)
from relay.protocol.minidump_reader import MinidumpError, parse_stability_report, read_minidump


class _Dump:
    """Builds a little-endian minidump: streams are appended, offsets returned."""

    def __init__(self) -> None:
        self.body = bytearray()

    def add(self, data: bytes) -> int:
        offset = 1024 + len(self.body)  # header and directory live below 1024
        self.body += data
        return offset

    def utf8(self, text: str) -> int:
        raw = text.encode()
        return self.add(struct.pack("<I", len(raw)) + raw + b"\0")

    def build(self, timestamp: int, streams: list[tuple[int, int, int]]) -> bytes:
        header = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, len(streams), 32, 0, timestamp, 0)
        directory = b"".join(struct.pack("<III", t, size, rva) for t, rva, size in streams)
        head = (header + directory).ljust(1024, b"\0")
        return head + bytes(self.body)


def _crashpad_dump() -> bytes:
    dump = _Dump()
    name = "C:\\app\\Module.dll".encode("utf-16-le")
    name_rva = dump.add(struct.pack("<I", len(name)) + name)
    module = bytearray(108)
    struct.pack_into("<I", module, 20, name_rva)
    module_list = dump.add(struct.pack("<I", 1) + bytes(module))
    # Global simple annotations: {"hello": "world"}.
    key, value = dump.utf8("hello"), dump.utf8("world")
    simple = dump.add(struct.pack("<III", 1, key, value))
    # Module annotations: a list and a string object.
    item = dump.utf8("dyld2 mode")
    lists = dump.add(struct.pack("<II", 1, item))
    obj_name = dump.utf8("pid")
    obj_value = dump.add(struct.pack("<I", 2) + b"42")
    objects = dump.add(struct.pack("<IIHHI", 1, obj_name, 1, 0, obj_value))
    module_info = dump.add(struct.pack("<IIIIIII", 1, 8, lists, 0, 0, 16, objects))
    links = dump.add(struct.pack("<IIII", 1, 0, 28, module_info))
    info = dump.add(struct.pack("<I32sIIII", 1, bytes(32), 12, simple, 16, links))
    return dump.build(1574692481, [(4, module_list, 112), (0x43500001, info, 52)])


def test_read_minidump_with_crashpad_annotations() -> None:
    info = read_minidump(_crashpad_dump())
    assert info.timestamp == 1574692481
    assert info.sdk_name == "minidump.crashpad"
    assert info.crashpad_annotations == [("hello", "world")]
    (module,) = info.modules
    assert module.code_file == "C:\\app\\Module.dll"
    assert module.list_annotations == ["dyld2 mode"]
    assert module.string_annotations == [("pid", "42")]


def test_read_minidump_refuses_garbage() -> None:
    for data in (b"MDMP invalid garbage", b"nope", b"MDMP" + b"\xff" * 40):
        with pytest.raises(MinidumpError):
            read_minidump(data)


def test_truncated_streams_leave_annotations_out() -> None:
    data = _crashpad_dump()[:1100]
    info = read_minidump(data)
    assert info.sdk_name == "minidump.crashpad"
    assert not info.has_annotations


def test_stability_report_fields() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    def varint(number: int, value: int) -> bytes:
        out = bytearray([number << 3])
        while True:
            byte = value & 0x7F
            value >>= 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    process = (
        varint(3, 15212) + field(4, field(1, varint(1, 10))) + field(7, field(2, varint(1, 302)))
    )
    data = field(2, process) + field(7, field(1, varint(3, 119009)))
    assert parse_stability_report(data) == {
        "type": "chromiumstabilityreport",
        "process_states": [
            {
                "process_id": 15212,
                "memory_state": {"windows_memory": {"process_private_usage": 40960}},
                "file_system_state": {"windows_file_system_state": {"process_handle_count": 302}},
            }
        ],
        "system_memory_state": {"windows_memory": {"system_handle_count": 119009}},
    }
    with pytest.raises(ValueError):
        parse_stability_report(b"\x12\x7f")


def test_minidump_placeholder_keeps_client_context() -> None:
    event: dict[str, Any] = {
        "level": "error",
        "exception": {
            "values": [
                {"type": "E", "thread_id": "36", "mechanism": {"handled": True},
                 "stacktrace": {"frames": [{"function": "f"}]}}
            ]
        },
    }  # fmt: skip
    untyped = apply_minidump(event, _crashpad_dump())
    first, second = event["exception"]["values"]
    assert first["mechanism"] == {"type": "minidump", "handled": True, "synthetic": True}
    assert first["thread_id"] == "36" and first["stacktrace"] == second["stacktrace"]
    assert event["platform"] == "native" and event["level"] == "error"
    assert event["sdk"] == {"name": "minidump.crashpad", "version": "0.0.0"}
    assert event["timestamp"] == 1574692481.0
    assert event["contexts"]["crashpad"] == {"hello": "world"}
    assert event["contexts"]["Module.dll"] == {
        "type": "crashpad",
        "pid": "42",
        "annotations": ["dyld2 mode"],
    }
    assert untyped == ["crashpad"]
    event["contexts"]["crashpad"]["type"] = "crashpad"
    strip_context_types(event, untyped)
    assert event["contexts"]["crashpad"] == {"hello": "world"}


def test_unreadable_minidump_and_upload_placeholder() -> None:
    event: dict[str, Any] = {}
    apply_minidump(event, b"MDMP invalid garbage")
    assert event == {
        "platform": "native",
        "level": "fatal",
        "exception": {
            "values": [
                {
                    "type": "Minidump",
                    "value": "Invalid Minidump",
                    "mechanism": {"type": "minidump", "handled": False, "synthetic": True},
                }
            ]
        },
    }
    uploaded: dict[str, Any] = {}
    apply_minidump(uploaded, None)
    assert uploaded["sdk"] == {"name": "minidump.upload", "version": "0.0.0"}


def test_apple_crash_report_delete_mode() -> None:
    event: dict[str, Any] = {"exception": [{"type": "Other", "thread_id": 1}]}
    apply_apple_crash_report(event, "delete")
    assert event["exception"]["values"] == [
        {
            "type": "AppleCrashReport",
            "value": "Invalid Apple Crash Report",
            "mechanism": {"type": "applecrashreport", "handled": False, "synthetic": True},
        }
    ]
    write_native_placeholder(event, "minidump", "retain")
    assert [e["type"] for e in event["exception"]["values"]] == ["Minidump", "AppleCrashReport"]
