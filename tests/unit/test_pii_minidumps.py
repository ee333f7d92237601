"""Minidump scrubbing (`$minidump` rules), against Relay's relay-pii minidumps.rs tests.

The three dumps in tests/data/minidumps are the fixtures of Relay's own tests; the
expected module paths are the ones its tests assert. Synthetic dumps cover the parts those
fixtures do not (heap and environ contents, UTF-16 strings, failures and the fallback).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

import relay.pii as pii
from relay.protocol import minidump_reader as mr
from relay.protocol.envelope import Envelope, Item
from relay.protocol.project_config import ProjectState
from relay.server.event_normalization import scrub_minidumps

DUMPS = Path(__file__).resolve().parents[1] / "data" / "minidumps"


def dump(name: str) -> bytes:
    return (DUMPS / name).read_bytes()


def scrub(apps: dict[str, list[str]], data: bytes, filename: str = "x.dmp", **kw: Any) -> bytes:
    config: dict[str, Any] = {"applications": apps, **kw}
    scrubbed = pii.compile_project_configs(config, None).process_minidump(filename, data)
    assert len(scrubbed) == len(data)
    return scrubbed


def module_paths(data: bytes) -> list[tuple[str, str]]:
    """(kind, path) of every module path region, decoded (debug names without the NUL)."""
    out = []
    for region in mr.scrub_regions(data):
        raw = data[region.start : region.end]
        if region.kind == mr.CODE_FILE:
            out.append(("code", raw.decode("utf-16-le")))
        elif region.kind == mr.DEBUG_FILE:
            out.append(("debug", raw.rstrip(b"\x00").decode("utf-8")))
    return out


def regions(data: bytes, kind: str) -> list[bytes]:
    return [data[r.start : r.end] for r in mr.scrub_regions(data) if r.kind == kind]


def masked(chunks: list[bytes]) -> bool:
    return bool(chunks) and all(set(chunk) <= {ord("*")} for chunk in chunks)


# -- Relay's fixtures and expectations ---------------------------------------------------


def test_module_list_windows() -> None:
    data = dump("windows.dmp")
    apps = {
        "debug_file": ["@anything:mask"],
        "$attachments.'windows.dmp'.code_file": ["@anything:mask"],
    }
    paths = module_paths(scrub(apps, data, "windows.dmp"))
    assert paths[0] == ("code", "*" * 42 + "\\crash.exe")
    assert paths[1] == ("debug", "*" * 42 + "\\crash.pdb")
    originals = module_paths(data)
    assert originals[0] == ("code", "C:\\projects\\breakpad-tools\\windows\\Release\\crash.exe")
    others = [p for (kind, p) in paths[2:] if kind == "code"]
    assert others and all(p.startswith("*" * 19 + "\\") for p in others)
    # Debug names without a directory stay as they are.
    debug = [p for (kind, p) in paths[2:] if kind == "debug"]
    assert debug == [p for (kind, p) in originals[2:] if kind == "debug"]


def test_module_list_linux() -> None:
    data = dump("linux.dmp")
    apps = {"debug_file": ["@anything:mask"], "$attachments.*.code_file": ["@anything:mask"]}
    scrubbed = scrub(apps, data, "linux.dmp")
    paths = module_paths(scrubbed)
    assert module_paths(data)[0] == ("code", "/work/linux/build/crash")
    assert paths[0] == ("code", "*****************/crash")
    assert all(p.count("/") == 1 or p == "linux-gate.so" for _, p in paths)


def test_module_list_macos() -> None:
    data = dump("macos.dmp")
    apps = {"debug_file": ["@anything:mask"], "$attachments.*.code_file": ["@anything:mask"]}
    paths = module_paths(scrub(apps, data, "macos.dmp"))
    assert paths[0] == ("code", "*" * 58 + "/crash")
    assert paths[1] == ("debug", "crash")
    assert all(p.count("/") == 1 for kind, p in paths if kind == "code")
    assert all("/" not in p for kind, p in paths if kind == "debug")


def test_module_paths_are_strings() -> None:
    paths = module_paths(scrub({"$string": ["@anything:mask"]}, dump("linux.dmp")))
    assert paths[0] == ("code", "*****************/crash")


@pytest.mark.parametrize(
    ("selector", "stack_scrubbed"),
    [
        ("$stack_memory", True),  # the bare type: kept working for existing configs
        ("$minidump.stack_memory", True),
        ("$minidump.*", True),  # a known Relay quirk: wildcards count as specific
        ("$minidump.$binary", False),  # a known Relay quirk: `$binary` is never specific
        ("$binary", False),
        ("$attachments.**", False),
        ("$binary && !stack_memory", False),
    ],
)
def test_stack_memory_selectors(selector: str, stack_scrubbed: bool) -> None:
    data = dump("linux.dmp")
    scrubbed = scrub({selector: ["@anything:mask"]}, data)
    stacks = regions(scrubbed, mr.STACK_MEMORY)
    if stack_scrubbed:
        assert masked(stacks)
    else:
        assert stacks == regions(data, mr.STACK_MEMORY)


def test_binary_scrubs_heap_and_environ_not_stack() -> None:
    data = dump("linux.dmp")
    scrubbed = scrub({"$binary && !stack_memory": ["@anything:mask"]}, data)
    assert masked(regions(scrubbed, mr.HEAP_MEMORY))
    assert masked(regions(scrubbed, mr.LINUX_STREAM))
    scrubbed = scrub({"$binary": ["@anything:mask"]}, data)
    assert masked(regions(scrubbed, mr.LINUX_STREAM))


def test_scrubbed_dump_still_reads() -> None:
    for name in ("linux.dmp", "macos.dmp", "windows.dmp"):
        data = dump(name)
        scrubbed = scrub({"**": ["@anything:mask"], "$stack_memory": ["@anything:mask"]}, data)
        assert scrubbed != data
        assert [(r.kind, r.start, r.end) for r in mr.scrub_regions(scrubbed)] == [
            (r.kind, r.start, r.end) for r in mr.scrub_regions(data)
        ]


# -- synthetic dumps ---------------------------------------------------------------------


def build_minidump(
    *,
    stack: bytes = b"stack bytes 10.0.0.1 end",
    heap: bytes = b"heap: user 127.0.0.1 here",
    environ: bytes | None = b"HOME=/home/alice\x00TOKEN=abc\x00",
    module_name: bytes = "/home/alice/bin/app".encode("utf-16-le"),
    debug_name: bytes | None = b"C:\\Users\\alice\\app.pdb\x00",
    endian: str = "<",
) -> bytes:
    """A small minidump: one thread (stack), a heap region, environ and one module."""
    blobs = bytearray()
    base = 32 + 12 * 4  # header and a directory of four streams

    def place(payload: bytes) -> int:
        rva = base + len(blobs)
        blobs.extend(payload)
        return rva

    stack_rva = place(stack)
    heap_rva = place(heap)
    name_rva = place(struct.pack(endian + "I", len(module_name)) + module_name)
    cv_size = cv_rva = 0
    if debug_name is not None:
        record = struct.pack(endian + "I", 0x53445352) + b"\x01" * 16 + struct.pack("<I", 1)
        record += debug_name
        cv_rva, cv_size = place(record), len(record)
    thread = struct.pack(endian + "IIIIQQII", 1, 0, 0, 0, 0, 0x1000, len(stack), stack_rva)
    thread += struct.pack(endian + "II", 0, 0)
    threads_rva = place(struct.pack(endian + "I", 1) + thread)
    memory = struct.pack(endian + "I", 2)
    memory += struct.pack(endian + "QII", 0x1000, len(stack), stack_rva)
    memory += struct.pack(endian + "QII", 0x9000, len(heap), heap_rva)
    memory_rva = place(memory)
    module = struct.pack(endian + "QIIII", 0x400000, 0x1000, 0, 0, name_rva) + b"\x00" * 52
    module += struct.pack(endian + "IIII", cv_size, cv_rva, 0, 0) + b"\x00" * 16
    modules_rva = place(struct.pack(endian + "I", 1) + module)
    streams = [(3, threads_rva, len(thread) + 4), (5, memory_rva, len(memory))]
    streams.append((4, modules_rva, len(module) + 4))
    if environ is not None:
        streams.append((0x47670007, place(environ), len(environ)))
    else:
        streams.append((0, 0, 0))  # an unused directory entry
    header = struct.pack(endian + "IIIIIIQ", 0x504D444D, 0xA793, len(streams), 32, 0, 0, 0)
    directory = b"".join(struct.pack(endian + "III", t, size, rva) for t, rva, size in streams)
    return header + directory + bytes(blobs)


def test_synthetic_regions() -> None:
    data = build_minidump()
    kinds = [r.kind for r in mr.scrub_regions(data)]
    assert kinds == [mr.STACK_MEMORY, mr.HEAP_MEMORY, mr.LINUX_STREAM, mr.CODE_FILE, mr.DEBUG_FILE]
    assert module_paths(data) == [
        ("code", "/home/alice/bin/app"),
        ("debug", "C:\\Users\\alice\\app.pdb"),
    ]


def test_big_endian_regions() -> None:
    data = build_minidump(endian=">", module_name="/home/alice/app".encode("utf-16-be"))
    assert [r.kind for r in mr.scrub_regions(data)][:2] == [mr.STACK_MEMORY, mr.HEAP_MEMORY]


def test_heap_ip_replaced_keeping_length() -> None:
    data = build_minidump()
    scrubbed = scrub({"$heap_memory": ["@ip:replace"]}, data)
    assert regions(scrubbed, mr.HEAP_MEMORY) == [b"heap: user [ip]***** here"]
    # The stack is not heap memory.
    assert regions(scrubbed, mr.STACK_MEMORY) == [b"stack bytes 10.0.0.1 end"]


def test_heap_utf16_strings() -> None:
    heap = b"\x00\x01" + "mail alice@example.com now".encode("utf-16-le") + b"\xff"
    data = build_minidump(heap=heap)
    scrubbed = scrub({"$minidump.heap_memory": ["@email:mask"]}, data)
    (region,) = regions(scrubbed, mr.HEAP_MEMORY)
    assert region == b"\x00\x01" + ("mail " + "*" * 17 + " now").encode("utf-16-le") + b"\xff"


def test_stack_needs_a_specific_selector() -> None:
    data = build_minidump()
    assert regions(scrub({"$binary": ["@ip:mask"]}, data), mr.STACK_MEMORY) == regions(
        data, mr.STACK_MEMORY
    )
    scrubbed = scrub({"$minidump.stack_memory": ["@ip:mask"]}, data)
    assert regions(scrubbed, mr.STACK_MEMORY) == [b"stack bytes ******** end"]


def test_linux_environ() -> None:
    data = build_minidump()
    scrubbed = scrub({"$binary && !heap_memory": ["@userpath:replace"]}, data)
    assert regions(scrubbed, mr.HEAP_MEMORY) == regions(data, mr.HEAP_MEMORY)
    assert regions(scrubbed, mr.LINUX_STREAM) == [b"HOME=/home/[user\x00TOKEN=abc\x00"]


def test_module_paths_keep_basename() -> None:
    data = build_minidump()
    scrubbed = scrub({"$string": ["@userpath:replace"]}, data)
    assert module_paths(scrubbed) == [
        ("code", "/home/[user/bin/app"),  # "[user]" cut to the five characters of "alice"
        ("debug", "C:\\Users\\[user\\app.pdb"),
    ]
    # Only the directory: a rule matching the file name leaves it alone.
    scrubbed = scrub({"$minidump.code_file": ["app"]}, data, rules={"app": _remove("app")})
    assert module_paths(scrubbed)[0] == ("code", "/home/alice/bin/app")


def _remove(regex: str) -> dict[str, Any]:
    return {"type": "pattern", "pattern": regex, "redaction": {"method": "remove"}}


def test_nothing_to_do_returns_the_payload() -> None:
    data = build_minidump()
    pipeline = pii.compile_project_configs({"applications": {"$string": ["@email"]}}, None)
    assert pipeline.process_minidump("x.dmp", data) is data
    assert pii.compile_project_configs(None, {"scrubData": True}).minidumps is None
    assert pii.compile_project_configs({}, None).minidumps is None


@pytest.mark.parametrize(
    "data",
    [b"MDMP", b"MDMP" + b"\xff" * 60, b"not a dump at all, ip 127.0.0.1 here", b""],
)
def test_unreadable_dump_is_scrubbed_as_an_attachment(data: bytes) -> None:
    scrubbed = scrub({"$attachments.**": ["@ip:mask"]}, data)
    assert scrubbed == data.replace(b"127.0.0.1", b"*********")


def test_missing_stream_falls_back() -> None:
    # Without the environ stream the dump reads; without a memory list it does not.
    data = build_minidump(environ=None)
    assert mr.LINUX_STREAM not in [r.kind for r in mr.scrub_regions(data)]
    edited = bytearray(data)
    assert struct.unpack_from("<I", edited, 32 + 12)[0] == 5  # the memory list's entry
    struct.pack_into("<I", edited, 32 + 12, 6)
    broken = bytes(edited)
    with pytest.raises(mr.MinidumpError):
        mr.scrub_regions(broken)
    scrubbed = scrub({"$binary": ["@ip:mask"]}, broken)
    # As a plain attachment: the stack is scrubbed as well.
    assert b"10.0.0.1" not in scrubbed and b"127.0.0.1" not in scrubbed


def test_failure_half_way_keeps_earlier_regions_and_falls_back() -> None:
    # rust-minidump does not check the CodeView file name, Relay does (as UTF-8) when it
    # gets to it: the regions before it are scrubbed, then the whole file as an attachment.
    data = build_minidump(debug_name=b"C:\\Users\\alice\\\xff.pdb\x00")
    scrubbed = scrub({"$heap_memory": ["@ip:replace"], "$attachments.**": ["@userpath:mask"]}, data)
    assert regions(scrubbed, mr.HEAP_MEMORY) == [b"heap: user [ip]***** here"]
    # Then the whole file as an attachment: the debug path and the stack too.
    assert b"alice" not in scrubbed


def test_stream_size_mismatch_is_rejected() -> None:
    data = bytearray(build_minidump())
    # The memory list's directory entry claims 3 bytes more than its two descriptors.
    entry = 32 + 12
    stream_type, size, rva = struct.unpack_from("<III", data, entry)
    assert stream_type == 5
    struct.pack_into("<III", data, entry, stream_type, size + 3, rva)
    with pytest.raises(mr.MinidumpError):
        mr.scrub_regions(bytes(data))


# -- in the server -----------------------------------------------------------------------


def _state(pii_config: dict[str, Any] | None) -> ProjectState:
    config: dict[str, Any] = {} if pii_config is None else {"piiConfig": pii_config}
    return ProjectState(project_id=42, config=config)


def _envelope(payload: bytes, **headers: Any) -> Envelope:
    item_headers = {"type": "attachment", "attachment_type": "event.minidump", **headers}
    return Envelope(headers={}, items=[Item(headers=item_headers, payload=payload)])


def test_server_scrubs_minidump_items() -> None:
    data = build_minidump()
    envelope = _envelope(data, filename="crash.dmp")
    scrub_minidumps(envelope, _state({"applications": {"$heap_memory": ["@ip:mask"]}}))
    (item,) = envelope.items
    assert regions(item.payload, mr.HEAP_MEMORY) == [b"heap: user ********* here"]
    assert item.headers["length"] == len(data)
    assert item.content_type == "application/x-dmp"  # Relay's default content type


def test_server_leaves_dumps_without_pii_config_and_placeholders() -> None:
    data = build_minidump()
    envelope = _envelope(data)
    scrub_minidumps(envelope, _state(None))
    assert envelope.items[0].payload is data
    ref = b'{"location":"x"}'
    envelope = _envelope(ref, content_type="application/vnd.sentry.attachment-ref+json")
    scrub_minidumps(envelope, _state({"applications": {"**": ["@anything:mask"]}}))
    assert envelope.items[0].payload is ref
