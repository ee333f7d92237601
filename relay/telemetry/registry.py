"""A small, dependency-free metrics registry with Prometheus text exposition.

Counters, gauges and histograms with labels. A process keeps one :class:`Registry`;
:meth:`Registry.snapshot` turns it into plain data (lists, dicts, floats) that can be
pickled or JSON-encoded, :func:`merge_snapshots` sums the snapshots of several worker
processes, and :func:`render` writes Prometheus' text format from any snapshot. So a
supervisor of ``--workers N`` can scrape its workers, merge and serve one answer.

Labels are bounded: a metric takes at most ``max_series`` distinct label sets; beyond that
new label sets are counted under the value ``"other"`` instead of growing memory.

This module does no I/O and imports only the standard library.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypedDict, TypeVar

Kind = Literal["counter", "gauge", "histogram"]
Aggregation = Literal["sum", "max"]

#: Label value that replaces new label values once a metric reached ``max_series``.
OVERFLOW = "other"
DEFAULT_MAX_SERIES = 500
#: Prometheus' default buckets, in seconds.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Series(TypedDict):
    """One label set of a metric: a value, or (histograms) bucket counts, sum and count."""

    labels: list[str]
    value: float
    buckets: list[float]
    sum: float


class MetricSnapshot(TypedDict):
    """One metric as plain data (see :meth:`Registry.snapshot`)."""

    name: str
    kind: Kind
    help: str
    labelnames: list[str]
    aggregation: Aggregation
    bounds: list[float]
    series: list[Series]


Snapshot = list[MetricSnapshot]


class Metric:
    """Common part of all metric kinds: name, help, label names and the series table."""

    kind: Kind = "counter"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        aggregation: Aggregation = "sum",
    ) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self.aggregation: Aggregation = aggregation
        self._lock = threading.Lock()

    def _key(self, values: tuple[str, ...], table: dict[tuple[str, ...], Any]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        if values in table or len(table) < self.max_series:
            return values
        return (OVERFLOW,) * len(values)

    def collect(self) -> list[Series]:
        """The current series of this metric."""
        raise NotImplementedError

    def snapshot(self) -> MetricSnapshot:
        """This metric as plain data."""
        return MetricSnapshot(
            name=self.name,
            kind=self.kind,
            help=self.help,
            labelnames=list(self.labelnames),
            aggregation=self.aggregation,
            bounds=[],
            series=self.collect(),
        )


class Counter(Metric):
    """A monotonically increasing count: ``counter.inc()`` or ``counter.inc(2, "a", "b")``."""

    kind: Kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(name, help, labelnames, **kw)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        """Add ``amount`` (>= 0) to the series of ``labels`` (in ``labelnames`` order)."""
        if amount < 0:
            raise ValueError("counters only go up")
        values = self._values
        if labels in values:
            values[labels] += amount
            return
        with self._lock:
            key = self._key(labels, values)
            values[key] = values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current value of one series (0 if it was never incremented)."""
        return self._values.get(labels, 0.0)

    def collect(self) -> list[Series]:
        return [
            Series(labels=list(k), value=v, buckets=[], sum=0.0)
            for k, v in list(self._values.items())
        ]


class Gauge(Metric):
    """A value that goes up and down, set directly or read from a function at collection."""

    kind: Kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), **kw: Any) -> None:
        super().__init__(name, help, labelnames, **kw)
        self._values: dict[tuple[str, ...], float] = {}
        self._functions: dict[tuple[str, ...], Callable[[], float]] = {}

    def set(self, value: float, *labels: str) -> None:
        """Set the series of ``labels`` to ``value``."""
        with self._lock:
            self._values[self._key(labels, self._values)] = float(value)

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        """Add ``amount`` (may be negative) to the series of ``labels``."""
        with self._lock:
            key = self._key(labels, self._values)
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_function(self, function: Callable[[], float] | None, *labels: str) -> None:
        """Read the series of ``labels`` from ``function`` at collection (None: remove it)."""
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        with self._lock:
            if function is None:
                self._functions.pop(labels, None)
            else:
                self._functions[labels] = function

    def value(self, *labels: str) -> float:
        """The current value of one series (functions are called)."""
        function = self._functions.get(labels)
        if function is not None:
            return float(function())
        return self._values.get(labels, 0.0)

    def collect(self) -> list[Series]:
        out = dict(self._values)
        for labels, function in list(self._functions.items()):
            try:
                out[labels] = float(function())
            except Exception:  # a broken callback must not break the scrape
                continue
        return [Series(labels=list(k), value=v, buckets=[], sum=0.0) for k, v in out.items()]


class Histogram(Metric):
    """Observations counted in cumulative buckets (``le``), with their sum and count.

    ``listener`` (if set) is called with every observation: the statsd sink uses it to
    send timers as they happen, as Relay does.
    """

    kind: Kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        **kw: Any,
    ) -> None:
        super().__init__(name, help, labelnames, **kw)
        self.bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        # Per series: one count per bound plus +Inf (not cumulative), then the sum.
        self._values: dict[tuple[str, ...], list[float]] = {}
        self.listener: Callable[[Histogram, float, tuple[str, ...]], None] | None = None

    def observe(self, value: float, *labels: str) -> None:
        """Record one observation in the series of ``labels``."""
        row = self._values.get(labels)
        if row is None:
            with self._lock:
                key = self._key(labels, self._values)
                row = self._values.setdefault(key, [0.0] * (len(self.bounds) + 2))
        row[bisect.bisect_left(self.bounds, value)] += 1
        row[-1] += value
        if self.listener is not None:
            self.listener(self, value, labels)

    def count(self, *labels: str) -> float:
        """How many observations one series has."""
        row = self._values.get(labels)
        return sum(row[:-1]) if row else 0.0

    def collect(self) -> list[Series]:
        out: list[Series] = []
        for labels, row in list(self._values.items()):
            cumulative: list[float] = []
            total = 0.0
            for count in row[:-1]:
                total += count
                cumulative.append(total)
            out.append(Series(labels=list(labels), value=total, buckets=cumulative, sum=row[-1]))
        return out

    def snapshot(self) -> MetricSnapshot:
        snap = super().snapshot()
        snap["bounds"] = list(self.bounds)
        return snap


M = TypeVar("M", bound=Metric)


class Registry:
    """The metrics of one process, in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def register(self, metric: M) -> M:
        """Add a metric; a second metric with the same name is an error."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = (), **kw: Any) -> Counter:
        """Create and register a counter."""
        return self.register(Counter(name, help, labelnames, **kw))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = (), **kw: Any) -> Gauge:
        """Create and register a gauge."""
        return self.register(Gauge(name, help, labelnames, **kw))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), **kw: Any
    ) -> Histogram:
        """Create and register a histogram."""
        return self.register(Histogram(name, help, labelnames, **kw))

    def get(self, name: str) -> Metric | None:
        """The metric registered under ``name``."""
        return self._metrics.get(name)

    def __iter__(self) -> Any:
        return iter(list(self._metrics.values()))

    def snapshot(self) -> Snapshot:
        """Every metric as plain data, ready to be sent to a supervisor and merged."""
        return [metric.snapshot() for metric in self._metrics.values()]

    def render(self) -> str:
        """The Prometheus text exposition of this registry."""
        return render(self.snapshot())


def merge_snapshots(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Combine the snapshots of several processes into one.

    Counters and histograms are summed series by series; gauges are summed or, for
    gauges with ``aggregation="max"`` (ages, build info), the largest value wins.
    """
    merged: dict[str, MetricSnapshot] = {}
    tables: dict[str, dict[tuple[str, ...], Series]] = {}
    for snapshot in snapshots:
        for metric in snapshot:
            name = metric["name"]
            if name not in merged:
                merged[name] = MetricSnapshot(
                    name=name,
                    kind=metric["kind"],
                    help=metric["help"],
                    labelnames=list(metric["labelnames"]),
                    aggregation=metric["aggregation"],
                    bounds=list(metric["bounds"]),
                    series=[],
                )
                tables[name] = {}
            elif merged[name]["kind"] != metric["kind"] or merged[name]["bounds"] != list(
                metric["bounds"]
            ):
                raise ValueError(f"metric {name} differs between snapshots")
            table = tables[name]
            use_max = metric["kind"] == "gauge" and metric["aggregation"] == "max"
            for series in metric["series"]:
                key = tuple(series["labels"])
                have = table.get(key)
                if have is None:
                    table[key] = Series(
                        labels=list(series["labels"]),
                        value=series["value"],
                        buckets=list(series["buckets"]),
                        sum=series["sum"],
                    )
                elif use_max:
                    have["value"] = max(have["value"], series["value"])
                else:
                    have["value"] += series["value"]
                    have["sum"] += series["sum"]
                    pairs = zip(have["buckets"], series["buckets"], strict=True)
                    have["buckets"] = [a + b for a, b in pairs]
    for name, metric in merged.items():
        metric["series"] = list(tables[name].values())
    return list(merged.values())


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def render(snapshot: Snapshot) -> str:
    """Prometheus text format (version 0.0.4) of a snapshot."""
    lines: list[str] = []
    for metric in snapshot:
        name, names = metric["name"], metric["labelnames"]
        lines.append(f"# HELP {name} {_escape_help(metric['help'])}")
        lines.append(f"# TYPE {name} {metric['kind']}")
        for series in sorted(metric["series"], key=lambda s: s["labels"]):
            values = series["labels"]
            if metric["kind"] != "histogram":
                lines.append(f"{name}{_labels(names, values)} {_format_value(series['value'])}")
                continue
            bounds = [*metric["bounds"], math.inf]
            for bound, count in zip(bounds, series["buckets"], strict=True):
                le = f'le="{_format_value(bound)}"'
                lines.append(f"{name}_bucket{_labels(names, values, le)} {_format_value(count)}")
            lines.append(f"{name}_sum{_labels(names, values)} {_format_value(series['sum'])}")
            lines.append(f"{name}_count{_labels(names, values)} {_format_value(series['value'])}")
    return "\n".join(lines) + "\n"


#: The content type of :func:`render`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
