"""Unreal crash reports: the archive, the crash context and the expansion in processing."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgspec
import pytest

from relay.config import Config
from relay.normalize.unreal import (
    breadcrumbs_from_logs,
    merge_unreal_context,
    merge_user_info,
    parse_unreal_context,
    user_report,
)
from relay.protocol.envelope import Envelope, Item
from relay.protocol.items import AttachmentType, ItemType
from relay.protocol.unreal import UnrealError, file_kind, parse_unreal_crash
from relay.server.crash_expansion import expand_unreal_envelope
from relay.server.outcomes import OutcomeSink
from relay.server.request_meta import RequestMeta

CONTEXT = b"""<?xml version="1.0" encoding="UTF-8"?>
<FGenericCrashContext>
  <RuntimeProperties>
    <IsAssert>true</IsAssert>
    <UserName>bruno</UserName>
    <UserDescription>it crashed</UserDescription>
    <ErrorMessage>Access violation</ErrorMessage>
    <CrashGUID>UE4CC-1</CrashGUID>
    <Misc.PrimaryGPUBrand>GPU X</Misc.PrimaryGPUBrand>
    <CrashReportClientVersion>1.0</CrashReportClientVersion>
    <Modules>a.dll</Modules>
    <EpicAccountId />
  </RuntimeProperties>
  <EngineData><RHI.RHIName>D3D11</RHI.RHIName></EngineData>
  <GameData>
    <__sentry>{&quot;release&quot;:&quot;foo@1&quot;,&quot;level&quot;:&quot;warning&quot;}</__sentry>
    <Map>Level1</Map>
  </GameData>
</FGenericCrashContext>
"""


def _fstring(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<i", len(raw)) + raw


def _archive(files: list[tuple[str, bytes]]) -> bytes:
    def header(count: int) -> bytes:
        return _fstring("dir".ljust(8)) + _fstring("name") + struct.pack("<ii", 0, count)

    body = header(0)  # the leading header's count is not trusted
    for index, (name, data) in enumerate(files):
        body += struct.pack("<i", index) + _fstring(name) + struct.pack("<i", len(data)) + data
    return zlib.compress(body + header(len(files)))


def test_parse_archive_and_kinds() -> None:
    files = parse_unreal_crash(
        _archive(
            [
                ("CrashContext.runtime-xml", CONTEXT),
                ("UE4Minidump.dmp", b"MDMP..."),
                ("minidump.dmp", b"Incident Identifier: x"),
                ("Game.log", b"log"),
                ("CrashReportClient.ini", b"[x]"),
                ("info.txt", b"?"),
            ]
        ),
        1 << 20,
    )
    assert [file_kind(f) for f in files] == [
        "context", "minidump", "applecrashreport", "log", "config", "other"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not zlib", "invalid_compression"),
        (zlib.compress(b"\x01"), "process_unreal"),
        (zlib.compress(b"x" * 100), "too_large:unreal_report"),
    ],
)
def test_bad_archives(payload: bytes, reason: str) -> None:
    with pytest.raises(UnrealError) as info:
        parse_unreal_crash(payload, 50)
    assert info.value.reason == reason


def test_context_merge() -> None:
    context = parse_unreal_context(CONTEXT)
    event: dict[str, Any] = {}
    merge_unreal_context(event, context)
    assert event["level"] == "error"
    assert event["logentry"] == {"formatted": "Access violation"}
    assert event["user"] == {"username": "bruno"}
    assert event["contexts"]["gpu"] == {"name": "GPU X", "api_type": "D3D11"}
    assert event["contexts"]["game"] == {"Map": "Level1"}
    assert event["contexts"]["unreal"]["crash_guid"] == "UE4CC-1"
    assert "modules" not in event["contexts"]["unreal"]
    assert event["sdk"] == {"name": "unreal.crashreporter", "version": "1.0"}
    assert user_report("e1", context) == {
        "event_id": "e1", "name": "bruno", "email": "", "comments": "it crashed"
    }  # fmt: skip


def test_context_refuses_entities_and_garbage() -> None:
    with pytest.raises(ValueError):
        parse_unreal_context(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    with pytest.raises(ValueError):
        parse_unreal_context(b"<unclosed")


def test_user_info_and_logs() -> None:
    event: dict[str, Any] = {}
    merge_user_info(event, "user1|epic|machine")
    assert event == {
        "user": {"id": "user1"},
        "tags": [["epic_account_id", "epic"], ["machine_id", "machine"]],
    }
    crumbs = breadcrumbs_from_logs(
        b"\xef\xbb\xbfLog file open\r\n[2018.10.29-16.56.37:542][  0]LogWindows: Failed\r\n"
    )
    assert crumbs[0] == {"message": "Log file open"}
    assert crumbs[1]["category"] == "LogWindows"
    assert crumbs[1]["message"] == "Failed"
    assert crumbs[1]["timestamp"] == pytest.approx(1540832197.542)


def test_expand_unreal_envelope() -> None:
    config = Config()
    report = _archive(
        [
            ("CrashContext.runtime-xml", CONTEXT),
            ("UE4Minidump.dmp", b"MDMP garbage"),
            ("Game.log", b"[2018.10.29-16.56.37:542][  0]LogX: hi\n"),
        ]
    )
    envelope = Envelope(
        {"event_id": "a" * 32, "unreal_user_id": "u9"},
        [Item.new(ItemType.UNREAL_REPORT, report)],
    )
    meta = RequestMeta(public_key="k" * 32, project_id=42)
    expand_unreal_envelope(envelope, meta, None, OutcomeSink(config), config)
    types = [(i.type, i.attachment_type) for i in envelope.items]
    assert types == [
        (ItemType.EVENT, None),
        (ItemType.ATTACHMENT, AttachmentType.UNREAL_CONTEXT),
        (ItemType.ATTACHMENT, AttachmentType.MINIDUMP),
        (ItemType.ATTACHMENT, AttachmentType.UNREAL_LOGS),
        (ItemType.USER_REPORT, None),
    ]
    event = msgspec.json.decode(envelope.items[0].payload)
    assert event["release"] == "foo@1" and event["level"] == "warning"
    assert event["user"]["id"] == "u9"
    assert event["breadcrumbs"]["values"][0]["message"] == "hi"
    (placeholder,) = event["exception"]["values"]
    assert placeholder["mechanism"]["type"] == "minidump"
