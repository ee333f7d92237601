"""Where the shared corpus lives: ``shared/`` beside the repository (as in CI)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "python"
