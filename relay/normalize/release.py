"""Release and environment validation (the rules of ``sentry-release-parser``)."""

from __future__ import annotations

import re

_BAD_RELEASE = re.compile(r"[\\/\r\n\t\x0c\x00]")
_BAD_ENVIRONMENT = re.compile(r"[\r\n\x0c/\x00]")


def is_valid_release(release: str) -> bool:
    """Whether Sentry accepts ``release`` as a release name."""
    if not release or len(release) > 200:
        return False
    if release in (".", "..") or release.lower() == "latest":
        return False
    return _BAD_RELEASE.search(release) is None


def is_valid_environment(environment: str) -> bool:
    """Whether Sentry accepts ``environment`` as an environment name."""
    if len(environment) > 64:
        return False
    return _BAD_ENVIRONMENT.search(environment) is None
