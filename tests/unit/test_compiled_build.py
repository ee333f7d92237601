"""The mypyc build (tools/build_compiled.py) and the stale compiled module guard."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import pytest

from relay._compiled import is_compiled, stale_compiled_modules, stale_message

REPO = Path(__file__).resolve().parents[2]
SUFFIX = EXTENSION_SUFFIXES[0]


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_compiled", REPO / "tools" / "build_compiled.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_compiled", module)
    spec.loader.exec_module(module)
    return module


def _package(tmp_path: Path, *, compiled: bool = True) -> Path:
    """A fake ``relay`` package: one compiled module, with the shared library or without."""
    package = tmp_path / "relay"
    (package / "normalize").mkdir(parents=True)
    if compiled:
        (package / f"_mypyc__mypyc{SUFFIX}").write_bytes(b"")
    (package / "normalize" / "schema.py").write_text("")
    (package / "normalize" / f"schema{SUFFIX}").write_bytes(b"")
    return package


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_fresh_compiled_modules_are_not_stale(tmp_path: Path) -> None:
    package = _package(tmp_path)
    _age(package / "normalize" / "schema.py", 60)
    assert is_compiled(str(package))
    assert stale_compiled_modules(str(package)) == []


def test_a_source_edited_after_the_build_is_stale(tmp_path: Path) -> None:
    package = _package(tmp_path)
    _age(package / "normalize" / f"schema{SUFFIX}", 60)
    assert stale_compiled_modules(str(package)) == [os.path.join("relay", "normalize", "schema.py")]


def test_a_compiled_module_without_its_source_is_stale(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "normalize" / "schema.py").unlink()
    assert stale_compiled_modules(str(package)) == [
        os.path.join("relay", "normalize", f"schema{SUFFIX}")
    ]


def test_pure_python_is_never_stale(tmp_path: Path) -> None:
    # Without the shared library nothing is compiled: the check reads one listing only.
    package = _package(tmp_path, compiled=False)
    _age(package / "normalize" / f"schema{SUFFIX}", 60)
    assert not is_compiled(str(package))
    assert stale_compiled_modules(str(package)) == []


def test_the_stale_message_says_what_to_do() -> None:
    message = stale_message([f"relay/m{i}.py" for i in range(7)])
    assert message.startswith("7 compiled module(s)")
    assert "relay/m4.py, ..." in message
    assert "make install" in message and "make pure" in message


def test_this_checkout_has_no_stale_compiled_modules() -> None:
    # What tests/conftest.py enforces for the whole session.
    assert stale_compiled_modules() == []


def test_msgspec_structs_and_class_keywords_stay_python(tmp_path: Path) -> None:
    script = _build_script()
    source = tmp_path / "relay" / "fake.py"
    source.parent.mkdir()
    source.write_text(
        "import msgspec\n"
        "from msgspec import Struct\n"
        "class A(msgspec.Struct):\n    x: int\n"
        "class B(Struct):\n    x: int\n"
        "class C(Exception, metaclass=type):\n    pass\n"
        "class D:\n    x: int = 0\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(script, "REPO", tmp_path)
        found = script.unsafe_classes("relay.fake")
    assert [entry.rsplit(" ", 1)[1] for entry in found] == ["A", "B", "C"]


def test_the_compiled_modules_are_the_hot_path_packages() -> None:
    script = _build_script()
    modules = script.compiled_modules()
    assert "relay.normalize.schema" in modules and "relay.pii.processor" in modules
    assert "relay.filters.inbound" in modules and "relay.quotas.envelope_limiter" in modules
    for module in modules:
        assert script.module_path(module).is_file()
        assert not module.endswith(".__init__")
        assert module not in script.EXCLUDED
        assert script.unsafe_classes(module) == []
    # Every source of the packages triggers a rebuild (make's prerequisites).
    assert {script.module_path(m) for m in modules} <= set(script.package_sources())
