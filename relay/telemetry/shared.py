"""One ``/metrics`` answer for all ``--workers``: snapshots shared through a directory.

With ``SO_REUSEPORT`` a scrape lands on any one worker, which alone knows only its own
counts. So each worker publishes its registry's snapshot to a file in a directory the
supervisor owns (every :data:`PUBLISH_SECS`, and once more when it stops), and the worker
that is scraped merges its live registry with the other workers' files.

Counters must never go down, even when a worker is restarted: a worker starts from the
counters and histograms its slot's previous process published (gauges describe a live
process, so they are not carried over).

Files are replaced atomically (write, then rename), so a reader sees a whole snapshot.
Standard library only, like the rest of :mod:`relay.telemetry`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import cast

from relay.telemetry.metrics import REGISTRY
from relay.telemetry.registry import Registry, Snapshot, merge_snapshots, render

#: How often a worker publishes its snapshot: how stale a scrape's other workers can be.
PUBLISH_SECS = 1.0

_PATTERN = "worker-*.json"


def read_snapshot(path: Path) -> Snapshot:
    """A published snapshot; empty if the file is missing or unreadable."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return []
    return cast(Snapshot, data) if isinstance(data, list) else []


def _monotonic_part(snapshot: Snapshot) -> Snapshot:
    """Counters and histograms only: what a restarted worker carries on from."""
    return [metric for metric in snapshot if metric["kind"] != "gauge"]


class WorkerMetrics:
    """A worker's share of the supervisor's metrics directory (see the module docstring)."""

    def __init__(self, directory: Path, index: int, registry: Registry = REGISTRY) -> None:
        self.directory = directory
        self.path = directory / f"worker-{index}.json"
        self.registry = registry
        #: What this worker slot counted before this process started.
        self._carried = _monotonic_part(read_snapshot(self.path))

    def own(self) -> Snapshot:
        """This worker's counts, including what its slot's earlier processes counted."""
        return merge_snapshots([self._carried, self.registry.snapshot()])

    def publish(self) -> None:
        """Write this worker's snapshot for the others (atomically)."""
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.own()))
            os.replace(tmp, self.path)
        except OSError:
            # The directory is gone (the supervisor is stopping): nothing to share with.
            with contextlib.suppress(OSError):
                tmp.unlink()

    def merged(self) -> Snapshot:
        """Every worker's counts: this one live, the others as last published."""
        others = [
            read_snapshot(path)
            for path in sorted(self.directory.glob(_PATTERN))
            if path != self.path
        ]
        return merge_snapshots([self.own(), *others])

    def render(self) -> str:
        """Prometheus text format of :meth:`merged`."""
        return render(self.merged())
