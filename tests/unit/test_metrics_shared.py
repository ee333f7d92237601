"""Metrics merged across ``--workers`` through the supervisor's directory."""

from __future__ import annotations

from pathlib import Path

from relay.telemetry.registry import Registry
from relay.telemetry.shared import WorkerMetrics, read_snapshot


def _registry() -> Registry:
    registry = Registry()
    registry.counter("relay_requests_total", "Requests.", ["status"])
    registry.gauge("relay_queue_bytes", "Queued bytes.")
    registry.histogram("relay_upstream_request_duration_seconds", "Upstream.", buckets=(0.1, 1.0))
    return registry


def _value(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in {text}")


def test_any_worker_answers_for_all(tmp_path: Path) -> None:
    one, two = _registry(), _registry()
    w1, w2 = WorkerMetrics(tmp_path, 0, one), WorkerMetrics(tmp_path, 1, two)
    one.get("relay_requests_total").inc(3, "200")  # type: ignore[union-attr]
    two.get("relay_requests_total").inc(4, "200")  # type: ignore[union-attr]
    two.get("relay_queue_bytes").set(10)  # type: ignore[union-attr]
    one.get("relay_queue_bytes").set(5)  # type: ignore[union-attr]
    two.get("relay_upstream_request_duration_seconds").observe(0.5)  # type: ignore[union-attr]
    w1.publish()
    w2.publish()
    for worker in (w1, w2):
        text = worker.render()
        assert _value(text, 'relay_requests_total{status="200"}') == 7
        assert _value(text, "relay_queue_bytes") == 15
        assert _value(text, "relay_upstream_request_duration_seconds_count") == 1


def test_own_counts_are_live_and_others_as_published(tmp_path: Path) -> None:
    one, two = _registry(), _registry()
    w1, w2 = WorkerMetrics(tmp_path, 0, one), WorkerMetrics(tmp_path, 1, two)
    two.get("relay_requests_total").inc(4, "200")  # type: ignore[union-attr]
    w2.publish()
    one.get("relay_requests_total").inc(1, "200")  # type: ignore[union-attr]
    two.get("relay_requests_total").inc(100, "200")  # type: ignore[union-attr] # not yet published
    assert _value(w1.render(), 'relay_requests_total{status="200"}') == 5


def test_a_restarted_worker_carries_its_counters_but_not_its_gauges(tmp_path: Path) -> None:
    old = _registry()
    before = WorkerMetrics(tmp_path, 0, old)
    old.get("relay_requests_total").inc(9, "200")  # type: ignore[union-attr]
    old.get("relay_queue_bytes").set(99)  # type: ignore[union-attr]
    before.publish()
    # The process dies; its slot's next process starts from what was published.
    new = _registry()
    after = WorkerMetrics(tmp_path, 0, new)
    new.get("relay_requests_total").inc(1, "200")  # type: ignore[union-attr]
    text = after.render()
    assert _value(text, 'relay_requests_total{status="200"}') == 10
    assert "relay_queue_bytes 99" not in text  # the dead process's queue is gone
    after.publish()
    assert WorkerMetrics(tmp_path, 1, _registry()).render().count("relay_requests_total{") == 1


def test_unreadable_or_missing_files_count_as_empty(tmp_path: Path) -> None:
    (tmp_path / "worker-3.json").write_text("{not json")
    assert read_snapshot(tmp_path / "worker-3.json") == []
    assert read_snapshot(tmp_path / "missing.json") == []
    registry = _registry()
    registry.get("relay_requests_total").inc(2, "200")  # type: ignore[union-attr]
    worker = WorkerMetrics(tmp_path, 0, registry)
    assert _value(worker.render(), 'relay_requests_total{status="200"}') == 2


def test_publishing_into_a_removed_directory_is_quiet(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    worker = WorkerMetrics(directory, 0, _registry())
    directory.rmdir()
    worker.publish()
    assert not directory.exists()
