"""Release and environment validation (the rules of ``sentry-release-parser``)."""

from __future__ import annotations

import re
from typing import Final

from relay.normalize.meta import utf8_len

#: Control characters, DEL and both slashes are never allowed.
_BAD_CHARS: Final = re.compile(r"[\x00-\x1f\x7f/\\]")
#: Limits are in UTF-8 bytes, not characters.
_MAX_RELEASE_BYTES: Final = 200
_MAX_ENVIRONMENT_BYTES: Final = 64


def _too_long(text: str, limit: int) -> bool:
    return utf8_len(text) > limit


def is_valid_release(release: str) -> bool:
    """Whether Sentry accepts ``release`` as a release name."""
    if not release or _too_long(release, _MAX_RELEASE_BYTES):
        return False
    if release in (".", "..") or release.lower() == "latest":
        return False
    return _BAD_CHARS.search(release) is None


def is_valid_environment(environment: str) -> bool:
    """Whether Sentry accepts ``environment`` as an environment name."""
    if _too_long(environment, _MAX_ENVIRONMENT_BYTES):
        return False
    if environment in (".", "..") or environment.lower() == "none":
        return False
    return _BAD_CHARS.search(environment) is None
