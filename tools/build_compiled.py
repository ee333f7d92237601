"""Compile the pure hot-path modules with mypyc, in place (``make install`` runs this).

The relay is installed editable, so each compiled module lands as an extension module
beside its ``.py`` file, where it wins on import; all of them share one library,
``relay/_mypyc__mypyc.*.so``. Compiled code behaves like the Python it comes from, only
faster: ``make pure`` (``python tools/build_compiled.py purge``) removes every build
product and the relay runs as plain Python again.

Usage::

    python tools/build_compiled.py build     # compile compiled_modules()
    python tools/build_compiled.py purge     # delete the compiled modules and generated C
    python tools/build_compiled.py stale     # list sources newer than their compiled module
    python tools/build_compiled.py sources   # the sources whose edit calls for a rebuild
"""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: mypyc's generated C, object files and the stamp (git-ignored, as every build product).
BUILD_DIR = REPO / "build" / "mypyc"
#: The one shared library every compiled module's shim loads: ``relay/_mypyc__mypyc.*.so``.
GROUP = "relay._mypyc"

#: The pure packages whose modules are compiled, chosen by measurement (compiled vs pure in
#: one run): normalization (bench/normalize.py) and PII scrubbing (bench/pii.py) run ~1.85x
#: faster, inbound filters (bench/filters.py) ~1.35x, the POP's cached quota check
#: (bench/quotas.py) ~1.4x. relay.protocol, relay.sampling and relay.kafka are thin glue
#: around msgspec and C libraries: compiled, bench/kafka.py and bench/run.py did not move
#: beyond noise, so they stay Python. Whole packages, so that a new module is compiled too;
#: the exceptions are below.
PACKAGES = (
    "relay.normalize",
    "relay.pii",
    "relay.filters",
    "relay.quotas",
)

#: Modules left as Python, and why. Modules defining msgspec structs are found and left out
#: by :func:`unsafe_classes` on their own.
EXCLUDED = {
    # A surrogate range in a string literal, which mypyc cannot compile; regex-bound anyway.
    "relay.pii.json_scrub": "regex-bound",
    # Async Redis client: the time goes to the network, and tests subclass its limiter.
    "relay.quotas.redis_limiter": "async I/O",
}


def module_path(module: str) -> Path:
    """The ``.py`` source of a dotted module name."""
    return REPO.joinpath(*module.split(".")).with_suffix(".py")


def unsafe_classes(module: str) -> list[str]:
    """Classes of ``module`` that mypyc would silently change.

    mypyc drops class keywords: ``class S(msgspec.Struct, frozen=True)`` compiles to a
    mutable struct, ``omit_defaults``/``rename``/``kw_only`` vanish, and the wire format
    changes without an error. Even a plain ``msgspec.Struct`` decodes differently once
    compiled (its fields are not seen as declared). Such a module must stay Python.
    """

    def is_struct(base: ast.expr) -> bool:
        return (isinstance(base, ast.Name) and base.id == "Struct") or (
            isinstance(base, ast.Attribute) and base.attr == "Struct"
        )

    tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
    return [
        f"{module}:{node.lineno} {node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and (node.keywords or any(is_struct(base) for base in node.bases))
    ]


def package_sources() -> list[Path]:
    """The ``.py`` files of :data:`PACKAGES`, package by package, sorted by name."""
    return [
        p for package in PACKAGES for p in sorted(REPO.joinpath(*package.split(".")).glob("*.py"))
    ]


def compiled_modules() -> list[str]:
    """Every module of :data:`PACKAGES` but the excluded ones and those with unsafe classes."""
    modules: list[str] = []
    for source in package_sources():
        module = ".".join(source.relative_to(REPO).with_suffix("").parts)
        # __init__ only re-exports: compiling it gains nothing.
        if source.stem == "__init__" or module in EXCLUDED or unsafe_classes(module):
            continue
        modules.append(module)
    return modules


def compiled_artifacts() -> list[Path]:
    """Every extension module under ``relay/`` (listed now or left from an earlier build)."""
    from importlib.machinery import EXTENSION_SUFFIXES

    return sorted(
        path
        for path in (REPO / "relay").rglob("*")
        if path.is_file() and any(path.name.endswith(s) for s in EXTENSION_SUFFIXES)
    )


def purge() -> None:
    """Delete every compiled module and the generated C: the relay is plain Python again."""
    for artifact in compiled_artifacts():
        artifact.unlink()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def build(modules: list[str]) -> None:
    """Compile ``modules`` into extension modules next to their sources."""
    # Imported here so that ``purge`` and ``stale`` work without the build toolchain.
    from mypyc.build import mypycify

    # By name: setuptools ships no type information in every version (Any is the honest type).
    setuptools = importlib.import_module("setuptools")

    started = time.monotonic()
    # An old extension module of a module no longer compiled must not linger.
    for artifact in compiled_artifacts():
        artifact.unlink()
    os.chdir(REPO)
    extensions = mypycify(
        [str(module_path(m).relative_to(REPO)) for m in modules],
        opt_level="3",
        target_dir=str(BUILD_DIR.relative_to(REPO)),
        group_name=GROUP,
        # One C file per module, so that gcc compiles them in parallel.
        multi_file=True,
    )
    # With multi_file, mypyc writes a dotted group's headers into the group's package
    # folder but includes them by bare name.
    for extension in extensions:
        extension.include_dirs.append(str(BUILD_DIR.joinpath(*GROUP.split(".")[:-1])))
    # A bare Distribution, not setuptools.setup(): setup() would read pyproject.toml,
    # whose PEP 639 ``license`` string older setuptools versions reject.
    dist = setuptools.Distribution({"name": "relay-compiled", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.inplace = True
    command.build_temp = str(BUILD_DIR / "temp")
    command.build_lib = str(BUILD_DIR / "lib")
    command.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")
    # setuptools leaves an unchanged extension module untouched: stamp every one, so that
    # "older than its source" (the staleness check) means exactly "not rebuilt since".
    now = time.time()
    for artifact in compiled_artifacts():
        os.utime(artifact, (now, now))
    print(f"mypyc: compiled {len(modules)} modules in {time.monotonic() - started:.0f}s")


def main(argv: list[str]) -> int:
    """Command-line entry point; returns the exit status."""
    action = argv[1] if len(argv) > 1 else "build"
    if action == "build":
        build(compiled_modules())
    elif action == "purge":
        purge()
    elif action == "stale":
        sys.path.insert(0, str(REPO))
        from relay._compiled import stale_compiled_modules

        stale = stale_compiled_modules()
        print("\n".join(stale))
        return 1 if stale else 0
    elif action == "sources":
        # Every source of the packages, not only the compiled ones: an edit can make a
        # module uncompilable (a new struct), and its old extension module must then go.
        print(" ".join(sorted(str(p.relative_to(REPO)) for p in package_sources())))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
