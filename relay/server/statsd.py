"""statsd output of the relay's metrics, for parity with Relay (``metrics.statsd``).

Counters are sent as deltas and gauges as values every ``metrics.periodic_secs``; histogram
observations (upstream request durations) are sent as timers in milliseconds when they
happen, as Relay's statsd client does. Metric names are Relay's where Relay has the metric
(``relay.telemetry.metrics.STATSD_NAMES``), tags use the DogStatsD ``|#k:v`` form Relay
writes, with ``metrics.default_tags`` and ``metrics.hostname_tag`` added.

Sending never blocks: UDP on a non-blocking socket, several lines per datagram; a datagram
the kernel does not take is dropped and counted in :attr:`StatsdSink.dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from relay.config import MetricsSection
from relay.telemetry.metrics import REGISTRY, STATSD_NAMES
from relay.telemetry.registry import Histogram, Registry, Snapshot

log = logging.getLogger(__name__)

#: Relay's default datagram size: fits an Ethernet MTU with IP and UDP headers.
DEFAULT_BUFFER_SIZE = 1432


def _clean(value: str) -> str:
    # statsd's separators may not appear in names or tag values.
    return value.replace("|", "_").replace(",", "_").replace("#", "_").replace(":", "_") or "none"


class StatsdSink:
    """Writes the registry to a statsd server."""

    def __init__(
        self,
        config: MetricsSection,
        registry: Registry = REGISTRY,
        hostname: str | None = None,
    ) -> None:
        assert config.statsd is not None
        host, _, port = config.statsd.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.config = config
        self.registry = registry
        self.prefix = config.prefix.rstrip(".")
        self.buffer_size = config.statsd_buffer_size or DEFAULT_BUFFER_SIZE
        tags = dict(config.default_tags)
        if config.hostname_tag:
            tags[config.hostname_tag] = hostname or socket.gethostname()
        self.base_tags = [f"{_clean(k)}:{_clean(v)}" for k, v in sorted(tags.items())]
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        self._pending: list[str] = []

    async def start(self) -> None:
        """Open the socket, hook timers and start the periodic flush."""
        # Resolved once: sendto with a hostname would resolve (and block) on every packet.
        infos = await asyncio.get_running_loop().getaddrinfo(
            self.address[0], self.address[1], type=socket.SOCK_DGRAM
        )
        family, _, _, _, sockaddr = infos[0]
        self.address = (str(sockaddr[0]), int(sockaddr[1]))
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._sock = sock
        # Baseline: only what happens from now on is sent (as deltas).
        self.collect_lines()
        for metric in self.registry:
            if isinstance(metric, Histogram):
                metric.listener = self._on_observe
        if self.config.periodic_secs > 0:
            self._task = asyncio.create_task(self._loop(), name="statsd")

    async def stop(self) -> None:
        """Flush once more and close."""
        for metric in self.registry:
            if isinstance(metric, Histogram) and metric.listener == self._on_observe:
                metric.listener = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.periodic_secs)
            self.flush()

    def _name_and_tags(
        self, metric_name: str, labelnames: list[str] | tuple[str, ...], values: list[str]
    ) -> tuple[str, list[str]]:
        name, renames = STATSD_NAMES.get(metric_name, (metric_name, {}))
        tags = [*self.base_tags]
        tags.extend(
            f"{_clean(renames.get(label, label))}:{_clean(value)}"
            for label, value in zip(labelnames, values, strict=False)
        )
        return f"{self.prefix}.{name}" if self.prefix else name, tags

    @staticmethod
    def _line(name: str, value: float, kind: str, tags: list[str]) -> str:
        text = f"{value:g}" if value != int(value) else str(int(value))
        line = f"{name}:{text}|{kind}"
        return f"{line}|#{','.join(tags)}" if tags else line

    def _on_observe(self, metric: Histogram, value: float, labels: tuple[str, ...]) -> None:
        name, tags = self._name_and_tags(metric.name, metric.labelnames, list(labels))
        self._pending.append(self._line(name, round(value * 1000, 3), "ms", tags))
        if sum(len(line) + 1 for line in self._pending) >= self.buffer_size:
            self.send(self._pending)
            self._pending = []

    def collect_lines(self, snapshot: Snapshot | None = None) -> list[str]:
        """Lines for counter deltas since the last call and current gauge values."""
        lines: list[str] = []
        for metric in snapshot if snapshot is not None else self.registry.snapshot():
            kind = metric["kind"]
            if kind == "histogram":
                continue
            for series in metric["series"]:
                key = (metric["name"], tuple(series["labels"]))
                value = series["value"]
                if kind == "counter":
                    delta = value - self._last.get(key, 0.0)
                    self._last[key] = value
                    if delta <= 0:
                        continue
                    value = delta
                name, tags = self._name_and_tags(
                    metric["name"], metric["labelnames"], series["labels"]
                )
                lines.append(self._line(name, value, "c" if kind == "counter" else "g", tags))
        return lines

    def flush(self) -> None:
        """Send counter deltas, gauges and buffered timers now."""
        lines = self._pending + self.collect_lines()
        self._pending = []
        self.send(lines)

    def send(self, lines: list[str]) -> None:
        """Pack lines into datagrams of at most ``buffer_size`` bytes and send them."""
        sock = self._sock
        if sock is None or not lines:
            return
        packet: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode()
            if packet and size + len(data) + 1 > self.buffer_size:
                self._send_packet(sock, b"\n".join(packet))
                packet, size = [], 0
            packet.append(data)
            size += len(data) + 1
        if packet:
            self._send_packet(sock, b"\n".join(packet))

    def _send_packet(self, sock: socket.socket, packet: bytes) -> None:
        try:
            sock.sendto(packet, self.address)
        except OSError as exc:  # BlockingIOError included: never wait for the kernel
            self.dropped += 1
            if self.dropped == 1:
                log.warning("statsd: could not send metrics to %s: %s", self.address, exc)
