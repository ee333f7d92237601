"""Project folders for chains of their own: the repository's projects plus the test's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_PROJECTS = Path(__file__).resolve().parents[2] / "configs" / "projects"


def projects_with(workdir: Path, project: dict[str, Any]) -> Path:
    """``workdir/projects`` with the repository's projects and ``project`` (by its id)."""
    folder = workdir / "projects"
    folder.mkdir()
    for path in REPO_PROJECTS.glob("*.yml"):
        (folder / path.name).write_text(path.read_text())
    (folder / f"{project['projectId']}.yml").write_text(yaml.safe_dump(project))
    return folder
