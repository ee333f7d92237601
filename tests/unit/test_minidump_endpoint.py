"""The minidump endpoint's multipart handling: what is dropped, and with which reason."""

from __future__ import annotations

import pytest

from relay.config import Config
from relay.errors import PayloadTooLarge
from relay.protocol.envelope import Item
from relay.protocol.items import AttachmentType
from relay.protocol.multipart import InvalidMultipart, Part
from relay.server.endpoints.common import ItemTooLarge
from relay.server.endpoints.minidump import infer_minidump_field_type
from relay.server.endpoints.multipart import multipart_items
from relay.server.endpoints.project_fetch import fetch_config_enabled


def _config(**limits: object) -> Config:
    config = Config()
    for key, value in limits.items():
        setattr(config.limits, key, value)
    return config


def _file(name: str, filename: str, data: bytes) -> Part:
    return Part(name=name, filename=filename, content_type=None, data=data)


def _field(name: str, value: str) -> Part:
    return Part(name=name, filename=None, content_type=None, data=value.encode())


def _skip_attachments(attachment_type: str) -> bool:
    return attachment_type != AttachmentType.MINIDUMP


def _summary(rejected: list[tuple[Item, str]]) -> list[tuple[str | None, int, str]]:
    return [(item.attachment_type, len(item.payload), reason) for item, reason in rejected]


def test_oversized_attachment_is_skipped_with_an_outcome() -> None:
    rejected: list[tuple[Item, str]] = []
    items = multipart_items(
        [_file("a", "a.txt", b"x" * 20), _file("upload_file_minidump", "m.dmp", b"MDMP")],
        _config(max_attachment_size=10),
        infer_minidump_field_type,
        _skip_attachments,
        rejected,
    )
    assert [i.attachment_type for i in items] == [AttachmentType.MINIDUMP]
    # One byte past the limit is what Relay reads, and counts.
    assert _summary(rejected) == [("event.attachment", 11, "too_large:attachment:attachment")]


def test_oversized_minidump_rejects_everything() -> None:
    rejected: list[tuple[Item, str]] = []
    with pytest.raises(InvalidMultipart):
        multipart_items(
            [_file("a", "a.txt", b"yo"), _file("upload_file_minidump", "m.dmp", b"MDMP" * 10)],
            _config(max_attachment_size=10),
            infer_minidump_field_type,
            _skip_attachments,
            rejected,
        )
    assert _summary(rejected) == [
        ("event.minidump", 11, "too_large:attachment:minidump"),
        ("event.attachment", 2, "too_large:attachment:minidump"),
    ]


def test_form_data_and_total_size_limits() -> None:
    rejected: list[tuple[Item, str]] = []
    with pytest.raises(ItemTooLarge) as info:
        multipart_items(
            [_file("upload_file_minidump", "m.dmp", b"MDMP content"), _field("A", "x" * 20)],
            _config(max_event_size=20),
            infer_minidump_field_type,
            _skip_attachments,
            rejected,
        )
    assert info.value.reason == "too_large:form_data"
    assert _summary(rejected) == [("event.minidump", 12, "too_large:form_data")]
    rejected.clear()
    with pytest.raises(PayloadTooLarge):
        multipart_items(
            [_file("upload_file_minidump", "m.dmp", b"MDMP content")],
            _config(max_attachments_size=10),
            infer_minidump_field_type,
            _skip_attachments,
            rejected,
        )
    assert _summary(rejected) == [("event.minidump", 12, "too_large:attachment:attachment")]


def test_fetch_config_option() -> None:
    assert fetch_config_enabled({"options": {"relay.endpoint-fetch-config.enabled": True}})
    assert not fetch_config_enabled({"options": {"relay.endpoint-fetch-config.enabled": "yes"}})
    assert not fetch_config_enabled({"options": {}})
    assert not fetch_config_enabled(None)
