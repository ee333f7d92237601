"""Stale compiled modules: a mypyc extension module older than its ``.py`` source.

``make install`` compiles the hot-path modules with mypyc into extension modules beside
their sources (tools/build_compiled.py). An extension module wins on import, so after an
edit of the ``.py`` a stale one silently runs the old code. This check is cheap: without
the shared mypyc library (a pure-Python install) it reads one directory listing.
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: The shared library of every compiled module (``<group>__mypyc``, group ``relay._mypyc``).
SHARED_LIBRARY_PREFIX = "_mypyc__mypyc."


def _is_extension(name: str) -> bool:
    return any(name.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


def is_compiled(package_dir: str = PACKAGE_DIR) -> bool:
    """Whether the mypyc shared library is installed beside the package."""
    return any(
        name.startswith(SHARED_LIBRARY_PREFIX) and _is_extension(name)
        for name in os.listdir(package_dir)
    )


def stale_compiled_modules(package_dir: str = PACKAGE_DIR) -> list[str]:
    """Sources (relative to the repository) newer than their compiled extension module.

    A compiled module whose source no longer exists is listed too (by its own path).
    """
    if not is_compiled(package_dir):
        return []
    root = os.path.dirname(package_dir)
    stale: list[str] = []
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not _is_extension(name) or name.startswith(SHARED_LIBRARY_PREFIX):
                continue
            source = os.path.join(folder, name.split(".", 1)[0] + ".py")
            try:
                source_mtime = os.stat(source).st_mtime
            except FileNotFoundError:
                # The source is gone (renamed, deleted) but its compiled module still imports.
                stale.append(os.path.relpath(os.path.join(folder, name), root))
                continue
            if source_mtime > os.stat(os.path.join(folder, name)).st_mtime:
                stale.append(os.path.relpath(source, root))
    return sorted(stale)


def stale_message(stale: list[str]) -> str:
    """The explanation shown when compiled modules are stale."""
    return (
        f"{len(stale)} compiled module(s) are older than their source and run old code: "
        f"{', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''}. "
        "Run `make install` to recompile, or `make pure` for plain Python."
    )
