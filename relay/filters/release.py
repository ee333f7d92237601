"""Release names as Sentry parses them (``package@version+build``), for rule conditions.

Used by the ``release`` condition (semver-like comparisons that ignore the build code) and by
the ``event.release.*`` getter paths (``build``, ``package``, ``version.short``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

__all__ = ["ParsedRelease", "Version", "compare_releases", "parse_release", "parse_version"]

_RELEASE: Final = re.compile(r"(@?[^@]+)@(.+?)", re.DOTALL)
_IDENT: Final = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_VERSION: Final = re.compile(
    r"(?P<major>[0-9]+)"
    r"(?:\.(?P<minor>[0-9]+))?"
    r"(?:\.(?P<patch>[0-9]+))?"
    r"(?:\.(?P<revision>[0-9]+))?"
    rf"(?P<pre>(?:-|[a-z]){_IDENT}?(?:\.{_IDENT})*)?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_HEX: Final = re.compile(r"[a-fA-F0-9]+")
_BAD_CHARS: Final = re.compile(r"[/\r\n\t\x0c]")


def _is_build_hash(value: str) -> bool:
    return len(value) in (12, 16, 20, 32, 40, 64) and _HEX.fullmatch(value) is not None


class Version(NamedTuple):
    """A parsed version; ``pre`` is the pre-release without its leading dash."""

    raw: str
    quad: tuple[int, int, int, int]
    components: int
    parts: tuple[str, ...]
    pre: str
    build: str

    def short(self) -> str:
        """The version without build code, as written (``1.2``, ``1.2.3-rc.1``)."""
        text = ".".join(self.parts)
        return f"{text}-{self.pre}" if self.pre else text


class ParsedRelease(NamedTuple):
    """A release split into package, raw version and (if it is one) a parsed version."""

    package: str | None
    version_raw: str
    version: Version | None

    @property
    def build_hash(self) -> str | None:
        """A commit-hash-like build code or version, if present."""
        if self.version is not None and self.version.build and _is_build_hash(self.version.build):
            return self.version.build
        return self.version_raw if _is_build_hash(self.version_raw) else None


def parse_version(raw: str) -> Version | None:
    """Parse ``1.2.3.4-pre+build``; None if it is not a version."""
    m = _VERSION.fullmatch(raw)
    if m is None:
        return None
    parts = tuple(p for p in m.group("major", "minor", "patch", "revision") if p is not None)
    nums = [int(p) for p in parts] + [0] * (4 - len(parts))
    pre = m.group("pre") or ""
    if pre.startswith("-"):
        pre = pre[1:]
    return Version(
        raw, (nums[0], nums[1], nums[2], nums[3]), len(parts), parts, pre, m.group("build") or ""
    )


@lru_cache(maxsize=1024)
def parse_release(release: str) -> ParsedRelease | None:
    """Parse a release name; None if Sentry would reject the name."""
    release = release.strip()
    if (
        len(release) > 200
        or release in (".", "..")
        or release.lower() == "latest"
        or _BAD_CHARS.search(release)
    ):
        return None
    m = _RELEASE.fullmatch(release)
    if m is None:
        return ParsedRelease(None, release, None)
    package, version_raw = m.group(1), m.group(2)
    version = None if _is_build_hash(version_raw) else parse_version(version_raw)
    return ParsedRelease(package, version_raw, version)


def _pre_key(pre: str) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Semver precedence: a release sorts after its pre-releases; numeric < alphanumeric."""
    if not pre:
        return (1, ())
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (0, idents)


def _comparable(release: str) -> tuple[str | None, tuple[int, int, int, int], str] | None:
    parsed = parse_release(release)
    if parsed is None:
        return None
    # A version made of hex digits is a commit hash, not a version.
    if parsed.build_hash is not None and parsed.build_hash == parsed.version_raw:
        return None
    version = parsed.version if parsed.version is not None else None
    if version is None:
        version = parse_version(parsed.version_raw)
        if version is None:
            return None
    return parsed.package, version.quad, version.pre


def compare_releases(reference: str, release: str) -> int | None:
    """Order ``release`` relative to ``reference`` (-1, 0, 1), ignoring build codes.

    None if either has no version, or ``reference`` names a package that ``release`` lacks.
    """
    ref = _comparable(reference)
    other = _comparable(release)
    if ref is None or other is None:
        return None
    if ref[0] is not None and ref[0] != other[0]:
        return None
    a = (other[1], _pre_key(other[2]))
    b = (ref[1], _pre_key(ref[2]))
    return (a > b) - (a < b)
