"""Which files of a crash upload go into the envelope, and which are uploaded separately.

When the global config lets endpoints wait for project configs, the minidump endpoint
decides per file, as Relay does:

* attachments over ``relay.attachment-inline.limit`` bytes are uploaded (relay.server.uploads)
  and replaced by a placeholder item pointing at the upload; a failed upload drops the file
  (outcome ``upload_failed``);
* minidumps (and GPU dumps) are uploaded the same way if the project has the
  ``projects:relay-minidump-uploads`` feature, and a failed upload fails the request (500);
* if errors are rate limited nothing is read at all; if attachments are, they are dropped
  unread. Files dropped unread count as empty ones in their outcomes, as in Relay, which
  decides before streaming them.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from relay.errors import RelayError
from relay.protocol.envelope import Item
from relay.protocol.items import AttachmentType, DataCategory, ItemType
from relay.protocol.limits import discard_item_type
from relay.protocol.minidump import (
    MINIDUMP_CONTENT_TYPE,
    decode_minidump,
    remove_container_extension,
    validate_minidump,
)
from relay.protocol.project_config import ProjectState
from relay.protocol.upload import (
    ATTACHMENT_REF_CONTENT_TYPE,
    INLINE_LIMIT_OPTION,
    encode_placeholder,
)
from relay.quotas import RateLimits
from relay.server.endpoints.common import EndpointContext, ItemTooLarge
from relay.server.request_meta import RequestMeta
from relay.server.uploads import UploadFailed, UploadProject

log = logging.getLogger(__name__)

#: The project feature that lets minidumps be uploaded instead of inlined.
MINIDUMP_UPLOADS_FEATURE = "projects:relay-minidump-uploads"
#: Outcome reason of files lost because their upload failed.
UPLOAD_FAILED = "upload_failed"

_DUMP_TYPES = frozenset(
    {AttachmentType.MINIDUMP, AttachmentType.NV_GPU_DUMP, AttachmentType.NV_SHADER_DEBUG}
)


class UploadFailedError(RelayError):
    """The minidump could not be uploaded: the crash is lost (500)."""

    status = 500
    reason = UPLOAD_FAILED


class Decision(enum.Enum):
    """What happens to a file of a given type."""

    INLINE = "inline"
    UPLOAD = "upload"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class CrashUploads:
    """The per-request decisions and what an upload needs."""

    project: UploadProject
    minidumps: Decision
    attachments: Decision
    #: The ``reasonCode`` of the limit that drops files (``DROP``).
    drop_reason: str | None
    inline_limit: int

    def decision(self, attachment_type: str) -> Decision:
        """The decision for a file of ``attachment_type``."""
        if attachment_type == AttachmentType.ATTACHMENT:
            return self.attachments
        if attachment_type in _DUMP_TYPES:
            return self.minidumps
        return Decision.INLINE

    def uploads(self, attachment_type: str, size: int) -> bool:
        """Whether a file of this type and size is uploaded rather than inlined."""
        return self.decision(attachment_type) is Decision.UPLOAD and size > self.inline_limit


def inline_limit(global_config: dict[str, Any] | None) -> int:
    """``relay.attachment-inline.limit`` (0, upload everything, when unset or invalid)."""
    options = (global_config or {}).get("options")
    value = options.get(INLINE_LIMIT_OPTION) if isinstance(options, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _reason(limits: RateLimits) -> str | None:
    longest = limits.longest()
    return longest.reason_code if longest is not None else None


def crash_uploads(
    ctx: EndpointContext, meta: RequestMeta, state: ProjectState | None
) -> CrashUploads | None:
    """The upload decisions for a crash request; ``None``: everything is inlined.

    Only with a project config (the endpoint waited for it) and an upload service.
    """
    rate_limits = ctx.ingestor.rate_limits
    if state is None or ctx.uploads is None:
        return None
    error_limits = attachment_limits = RateLimits()
    if rate_limits is not None:
        error_limits = rate_limits.category_limits(meta, state, DataCategory.ERROR)
        attachment_limits = rate_limits.category_limits(meta, state, DataCategory.ATTACHMENT)
    drop_reason: str | None = None
    if not state.has_feature(MINIDUMP_UPLOADS_FEATURE):
        minidumps = Decision.INLINE
    elif error_limits.is_limited():
        minidumps, drop_reason = Decision.DROP, _reason(error_limits)
    else:
        minidumps = Decision.UPLOAD
    if minidumps is Decision.DROP:
        attachments = Decision.DROP
    elif attachment_limits.is_limited():
        attachments, drop_reason = Decision.DROP, _reason(attachment_limits)
    else:
        attachments = Decision.UPLOAD
    project = UploadProject(
        project_id=state.project_id or meta.project_id,
        public_key=meta.public_key,
        org_id=state.organization_id or 0,
        retention_days=state.event_retention,
    )
    limit = inline_limit(ctx.ingestor.projects.global_config)
    return CrashUploads(project, minidumps, attachments, drop_reason, limit)


def unread_item(attachment_type: str, filename: str | None) -> Item:
    """The item a file dropped before (or instead of) being read counts as: empty."""
    headers: dict[str, object] = {"attachment_type": attachment_type}
    if filename is not None:
        headers["filename"] = filename
    return Item.new(ItemType.ATTACHMENT, b"", **headers)


async def _upload_file(
    ctx: EndpointContext,
    uploads: CrashUploads,
    data: bytes,
    *,
    attachment_type: str,
    filename: str | None,
    content_type: str | None,
) -> Item:
    """Upload one file and return its placeholder item.

    A minidump is decompressed and checked first and stored as ``application/x-dmp``.
    Raises ``ItemTooLarge`` over ``limits.max_upload_size``, ``UploadFailed`` when the
    upload does not succeed, and the minidump errors for an invalid dump.
    """
    assert ctx.uploads is not None
    limit = int(ctx.config.limits.max_upload_size)
    if attachment_type == AttachmentType.MINIDUMP:
        data = decode_minidump(data, limit + 1)
        validate_minidump(data)
        content_type = MINIDUMP_CONTENT_TYPE
        if filename is not None:
            filename = remove_container_extension(filename)
    if len(data) > limit:
        raise ItemTooLarge(discard_item_type(unread_item(attachment_type, filename)))
    uploaded = await ctx.uploads.upload_bytes(uploads.project, data, attachment_type)
    headers: dict[str, object] = {
        "attachment_type": attachment_type,
        "attachment_length": uploaded.length,
    }
    if filename is not None:
        headers["filename"] = filename
    return Item.new(
        ItemType.ATTACHMENT,
        encode_placeholder(uploaded.location, content_type),
        content_type=ATTACHMENT_REF_CONTENT_TYPE,
        **headers,
    )


async def upload_or_drop(
    ctx: EndpointContext,
    uploads: CrashUploads,
    data: bytes,
    attachment_type: str,
    filename: str | None,
    content_type: str | None,
    rejected: list[tuple[Item, str]],
) -> Item | None:
    """The placeholder of an uploaded file; ``None`` if the file was dropped instead.

    A minidump that cannot be uploaded fails the request; another file is dropped.
    """
    is_dump = attachment_type == AttachmentType.MINIDUMP
    try:
        return await _upload_file(
            ctx, uploads, data,
            attachment_type=attachment_type, filename=filename, content_type=content_type,
        )  # fmt: skip
    except UploadFailed as exc:
        log.warning("upload of a %s failed: %s", attachment_type, exc)
        rejected.append((unread_item(attachment_type, filename), UPLOAD_FAILED))
        if is_dump:
            raise UploadFailedError(f"failed to upload the minidump: {exc}") from exc
    except RelayError as exc:
        rejected.append((unread_item(attachment_type, filename), exc.reason))
        if is_dump:
            raise
    return None


__all__ = [
    "UPLOAD_FAILED",
    "CrashUploads",
    "Decision",
    "UploadFailedError",
    "crash_uploads",
    "inline_limit",
    "unread_item",
    "upload_or_drop",
]
