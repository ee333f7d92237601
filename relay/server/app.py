"""Assembles a relay: services, routes and listeners, with one start/stop order.

Start order: Redis, Kafka producer, upstream client (registration), project cache,
then the listeners. Stop order is the reverse of what data flows through: stop
accepting, drain forwards/processing, flush outcomes and Kafka, close clients.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import RedisCluster

from relay.config import Config
from relay.kafka.router import KafkaRouter
from relay.kafka.topics import KafkaTopic, resolve_topics, unused_topic_keys
from relay.protocol.keys import Credentials
from relay.protocol.project_config import ProjectState
from relay.quotas.redis_limiter import RedisRateLimiter
from relay.server.admission import Admission, admission_middleware
from relay.server.autoscaling import AutoscalingData, BusyMeter, autoscaling_routes
from relay.server.cors import cors_middleware
from relay.server.drain import DrainGate
from relay.server.endpoints import fold_slashes_middleware, ingest_routes
from relay.server.forwarder import Forwarder
from relay.server.front import FrontDoor, front_routes, wrap
from relay.server.health import health_routes
from relay.server.health_check import (
    HealthCheck,
    MemoryChecker,
    spool_health_probe,
    sync_probe,
    system_memory_probe,
)
from relay.server.http_errors import error_middleware
from relay.server.ingest import EnvelopeSink, Ingestor
from relay.server.killswitch_service import KillSwitchService
from relay.server.metrics_pipeline import MetricsPipeline
from relay.server.objectstore import AttachmentUploader
from relay.server.outcomes import OutcomeSink
from relay.server.outcomes_api import outcomes_api_routes
from relay.server.processor import Processor
from relay.server.project_cache import ProjectCache
from relay.server.rate_limiting import RateLimiting
from relay.server.redis_clients import RedisClient, RedisClients
from relay.server.relay_api import relay_api_routes
from relay.server.relays import RelayCache
from relay.server.self_report import SelfReporter
from relay.server.spool import Spool, SpoolService
from relay.server.statsd import StatsdSink
from relay.server.telemetry import QueueGauges, metrics_routes, request_metrics_middleware
from relay.server.uploads import UploadKeys, upload_service
from relay.server.upstream import UpstreamClient
from relay.telemetry.shared import WorkerMetrics

log = logging.getLogger(__name__)

#: Bytes of envelopes a POP relay holds in memory while forwarding them.
FORWARD_BUDGET_BYTES = 256 * 1024 * 1024


class RelayApp:
    """One relay process's services and HTTP listeners."""

    #: Bind with SO_REUSEPORT, so that several worker processes share the port
    #: (relay.server.supervisor). Set before :meth:`start`.
    reuse_port: bool = False
    #: Under ``--workers``: this worker's share of the merged ``/metrics`` (set by the runner).
    worker_metrics: WorkerMetrics | None = None

    def __init__(self, config: Config, credentials: Credentials | None) -> None:
        self.config = config
        self.credentials = credentials
        #: ``processing.redis`` (processing relays): project configs and quotas.
        self.redis_clients = RedisClients()
        self.redis: RedisClient | None = None
        self.producer: KafkaRouter | None = None
        self.upstream = UpstreamClient(config, credentials)
        self.outcomes = OutcomeSink(config, upstream=self.upstream)
        self.projects: ProjectCache | None = None
        self.relays = RelayCache(config, self.upstream)
        self.ingestor: Ingestor | None = None
        self.forwarder: Forwarder | None = None
        self.memory = MemoryChecker.from_config(config.health)
        self.health = HealthCheck(
            config.health,
            [
                sync_probe("system memory", lambda: system_memory_probe(self.memory)),
                sync_probe(
                    "spool health",
                    lambda: spool_health_probe(self.memory, self.disk),
                ),
                # Unhealthy while the metrics aggregator refuses buckets (over its budget).
                sync_probe(
                    "aggregator",
                    lambda: self.metrics is None or self.metrics.service.can_accept(),
                ),
            ],
        )
        self.reporter: SelfReporter | None = None
        self.rate_limits: RateLimiting | None = None
        self.redis_limiter: RedisRateLimiter | None = None
        self.metrics: MetricsPipeline | None = None
        self.killswitches: KillSwitchService | None = None
        #: The disk spool file (``spool.envelopes.path``): envelopes waiting for their project
        #: config, and on a POP those the upstream did not take (replayed by ``spool``).
        self.disk: Spool | None = None
        self.spool: SpoolService | None = None
        self._runners: list[web.AppRunner] = []
        #: The listening sockets' servers and the main listener's front door (relay.server.front).
        self._servers: list[asyncio.AbstractServer] = []
        self.front_door: FrontDoor | None = None
        self.ports: list[int] = []
        self._requests_in_progress = 0
        #: Closed on shutdown: health and metrics keep answering, other requests get 503.
        self.drain_gate = DrainGate()
        self.queue_gauges = QueueGauges()
        #: In-memory byte budgets of envelopes being processed or forwarded (limits.*).
        self.admission = Admission.from_config(config)
        self.statsd: StatsdSink | None = None
        self.objectstore: AttachmentUploader | None = None
        # One event loop does Relay's runtime and processing-pool work: one meter of its
        # share of the CPU answers for both (relay.server.autoscaling).
        self._loop_meter = BusyMeter(time.process_time)
        #: The metrics aggregator's, once it exists (start).
        self._aggregator_meter: BusyMeter | None = None
        #: Processing paused (SIGUSR1, see toggle_hold).
        self.held = False

    def _cached_state(self, public_key: str) -> ProjectState | None:
        return self.projects.get_state(public_key) if self.projects is not None else None

    def _global_config(self) -> dict[str, Any] | None:
        return self.projects.global_config if self.projects is not None else None

    def is_ready(self) -> bool:
        """Ready once registered upstream (managed mode), Kafka is connected and probes pass.

        ``auth.ready: always`` waives only the registration, as in Relay: the memory probes
        still apply. Registration and Kafka are answered from their current state, the probes
        (relay.server.health_check) from their latest round.
        """
        config = self.config
        if (
            config.auth.ready == "authenticated"
            and config.relay.mode == "managed"
            and not self.upstream.authenticated.is_set()
        ):
            return False
        if config.processing.enabled and self.producer is None:
            return False
        return self.health.is_healthy()

    async def start(self) -> None:
        """Start services, then listen. Raises if a required service is unreachable."""
        config = self.config
        # First, so that errors while starting are reported too.
        self.reporter = SelfReporter.from_config(config.sentry)
        if self.reporter is not None:
            await self.reporter.start()
        sink: EnvelopeSink
        spool_cfg = config.spool.envelopes
        if spool_cfg.path:
            # A durable 200 (relay.server.durable) is only as good as an fsynced row.
            fsync = config.relay.ack == "durable"
            self.disk = Spool(Path(spool_cfg.path), spool_cfg.max_disk_size, fsync=fsync)
        if config.processing.enabled:
            # A single server or a Redis Cluster; maybe one of each for configs and quotas.
            self.redis_clients = RedisClients.from_config(config.processing.redis)
            self.redis = self.redis_clients.project_configs
            overrides = config.processing.topics
            for key in unused_topic_keys(overrides):
                log.warning("processing.topics.%s names no topic this relay writes", key)
            secondary = {
                name: [(p.name, str(p.value)) for p in params]
                for name, params in config.processing.secondary_kafka_configs.items()
            }
            resolved = resolve_topics(overrides, secondary)
            # Each topic name carries its Kafka config; the router produces with it.
            topics: dict[KafkaTopic, str] = dict(resolved)
            params = [(p.name, str(p.value)) for p in config.processing.kafka_config]
            producer = KafkaRouter(params, secondary, resolved)
            await producer.start()
            self.producer = producer
            self.outcomes = OutcomeSink(config, producer, topics)
            limiter: RedisRateLimiter | None = None
            if self.redis_clients.quotas is not None:
                limiter = RedisRateLimiter(self.redis_clients.quotas)
                self.redis_limiter = limiter
            self.rate_limits = RateLimiting(self.outcomes, limiter)
            self.metrics = MetricsPipeline(
                config, self._cached_state, producer=producer,
                metrics_topic=topics[KafkaTopic.METRICS_SESSIONS],
                global_config=self._global_config,
            )  # fmt: skip
            # The sample rate is a global-config option, read per envelope once it is known.
            self.objectstore = AttachmentUploader.from_config(
                config.processing.objectstore, self.outcomes,
                lambda: self.projects.global_config if self.projects is not None else None,
            )  # fmt: skip
            if self.objectstore is not None:
                await self.objectstore.start()
            sink = Processor(
                config, producer, topics, self.outcomes,
                rate_limits=self.rate_limits, metrics=self.metrics, objectstore=self.objectstore,
                upload_keys=UploadKeys.from_config(config.upload, self.credentials),
                global_config=self._global_config, sampling_states=self._cached_state,
            )  # fmt: skip
        else:
            self.rate_limits = RateLimiting(self.outcomes)
            self.metrics = MetricsPipeline(
                config, self._cached_state, upstream=self.upstream,
                global_config=self._global_config,
            )  # fmt: skip
            self.forwarder = Forwarder(
                config, self.upstream, self.outcomes, FORWARD_BUDGET_BYTES,
                rate_limits=self.rate_limits, metrics=self.metrics,
                global_config=self._global_config, sampling_states=self._cached_state,
            )  # fmt: skip
            sink = self.forwarder
            if self.disk is not None:
                # Envelopes the upstream does not take within the retry budget go to disk.
                self.spool = SpoolService(
                    self.disk, self.forwarder.replay, spool_cfg.max_unspool_envelopes_per_second
                )
                await self.spool.start()
                self.forwarder.spool = self.spool
        if self.disk is not None and self.spool is None:
            await self.disk.open()
        await self.upstream.start()
        projects = ProjectCache(config, self.upstream, self.redis)
        await projects.start()
        self.projects = projects
        await self.relays.start()
        # On a Redis Cluster the switches are read through the cluster client (a client of
        # one node gets MOVED answers); otherwise the service opens its own short-timeout one.
        cluster = self.redis if isinstance(self.redis, RedisCluster) else None
        shared = None if config.killswitches.redis else cluster
        self.killswitches = KillSwitchService(config, self.outcomes, shared)
        await self.killswitches.start()
        # A POP aggregates received metric buckets at once, whether or not the project config
        # is known (processing relays write them to Kafka with the envelope instead).
        early_metrics = (
            self.metrics.take_metric_buckets
            if self.forwarder is not None and config.relay.mode != "proxy"
            else None
        )
        ingestor = Ingestor(
            config, projects, self.relays, sink, self.upstream, self.outcomes,
            rate_limits=self.rate_limits, killswitches=self.killswitches,
            admission=self.admission, memory=self.memory, early_metrics=early_metrics,
            disk=self.disk,
        )  # fmt: skip
        ingestor.hold(self.held)
        await ingestor.start()
        await self.metrics.start()
        aggregator = self.metrics.service
        self._aggregator_meter = BusyMeter(lambda: aggregator.busy_seconds)
        self.ingestor = ingestor
        await self.health.start()

        app = self._web_app()
        uploads = upload_service(
            config, self.upstream, self.credentials,
            self.objectstore.client if self.objectstore is not None else None,
        )  # fmt: skip
        app.add_routes(ingest_routes(config, ingestor, uploads))
        app.add_routes(
            relay_api_routes(
                config, self.relays, projects.get_state, lambda: projects.served_global_config,
                self.upstream,
            )
        )  # fmt: skip
        app.add_routes(
            outcomes_api_routes(
                config, self.relays, self.outcomes, projects, self.rate_limits, self.metrics
            )
        )
        internal = config.relay.internal_port is not None and (
            config.relay.internal_port != config.relay.port
            or (config.relay.internal_host or config.relay.host) != config.relay.host
        )
        if not internal:
            app.add_routes(health_routes(self.is_ready))
            app.add_routes(autoscaling_routes(self.autoscaling))
            app.add_routes(metrics_routes(self.worker_metrics))
        self._publish_queues()
        if config.metrics.statsd:
            self.statsd = StatsdSink(config.metrics)
            await self.statsd.start()
        await self._listen(app, config.relay.host, config.relay.port, front=config.relay.front_door)
        if internal:
            internal_app = self._web_app()
            internal_app.add_routes(health_routes(self.is_ready))
            internal_app.add_routes(autoscaling_routes(self.autoscaling))
            internal_app.add_routes(metrics_routes(self.worker_metrics))
            assert config.relay.internal_port is not None
            await self._listen(
                internal_app, config.relay.internal_host or config.relay.host,
                config.relay.internal_port,
            )  # fmt: skip
        log.info("relay listening on %s:%s", config.relay.host, self.ports[0])

    def toggle_hold(self) -> None:
        """Relay's SIGUSR1: pause processing (envelopes are answered 200 and held in the
        pending queues), or resume it. Before the start, the ingest path starts so."""
        self.held = not self.held
        log.info("SIGUSR1 received, dequeue=%s", not self.held)
        if self.ingestor is not None:
            self.ingestor.hold(self.held)

    def autoscaling(self) -> AutoscalingData | None:
        """A reading for ``/api/relay/autoscaling/`` (None in proxy mode, as Relay)."""
        if self.config.relay.mode == "proxy":
            return None
        held = len(self.ingestor.pending) if self.ingestor is not None else 0
        services: list[tuple[str, int, int]] = []
        if self._aggregator_meter is not None:
            services.append(("AggregatorService", 0, self._aggregator_meter.read()))
        loop = self._loop_meter.read()
        return AutoscalingData(
            memory_usage=self.memory.stat.memory().used_fraction(),
            up=0 if self.drain_gate.closed else 1,
            item_count=held + (len(self.disk) if self.disk is not None else 0),
            total_size=self.disk.bytes if self.disk is not None else 0,
            services=services,
            worker_pool_utilization=loop,
            runtime_utilization=loop,
        )

    def _publish_queues(self) -> None:
        # relay_queue_bytes / relay_queue_oldest_seconds, read at scrape time.
        gauges = self.queue_gauges
        admission = self.admission
        gauges.add("admission", lambda: admission.bytes_in_use, admission.oldest_admitted_at)
        gauges.add(
            "admission_heavy", lambda: admission.heavy_bytes, admission.oldest_heavy_admitted_at
        )
        if self.ingestor is not None:
            pending = self.ingestor.pending
            gauges.add("pending", lambda: pending.bytes_queued, pending.oldest_queued_at)
        forwarder = self.forwarder
        if forwarder is not None:
            gauges.add("forward", lambda: forwarder.bytes_in_flight, forwarder.oldest_queued_at)
        producer = self.producer
        if producer is not None:
            gauges.add("kafka", lambda: producer.in_flight_bytes)

    def _middlewares(self, fold_slashes: bool = True) -> list[Middleware]:
        """The middlewares of every request, outermost first.

        The front door's paths have no repeated slashes (``fold_slashes=False``).
        """
        middlewares: list[Middleware] = [
            # Outermost: requests refused while draining are not waited for.
            self.drain_gate.middleware,
            self._count_requests,
            request_metrics_middleware,
            cors_middleware,
            error_middleware,
            fold_slashes_middleware,
            # Innermost: refuses an upload that cannot be admitted before reading it.
            admission_middleware(self.admission),
        ]
        if not fold_slashes:
            middlewares.remove(fold_slashes_middleware)
        return middlewares

    def _web_app(self) -> web.Application:
        # Bodies are read and limited by the handlers themselves (relay.server.body).
        return web.Application(middlewares=self._middlewares(), client_max_size=2**40)

    @web.middleware
    async def _count_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Requests in progress, so that shutdown lets them finish reading their bodies.
        self._requests_in_progress += 1
        try:
            return await handler(request)
        finally:
            self._requests_in_progress -= 1

    async def _finish_requests(self, timeout: float) -> None:
        """Wait (bounded) for requests already being handled; the drain gate is closed.

        aiohttp's own graceful shutdown stops reading from open connections at once, which
        would cut off a request whose body is still arriving; so in-flight requests get up
        to ``timeout`` to complete first: those aiohttp serves, and those whose head or
        body the front door is still receiving. The listeners stay open until the drain is
        over, for the liveness probe (relay.server.drain).
        """
        deadline = time.monotonic() + timeout
        door = self.front_door
        while time.monotonic() < deadline:
            if not self._requests_in_progress and (door is None or not door.receiving()):
                return
            # Polled: the front door's connections signal nothing, and this runs once.
            await asyncio.sleep(0.01)

    async def _listen(
        self, app: web.Application, host: str, port: int, front: bool = False
    ) -> None:
        """Serve ``app`` on ``host:port``; with ``front``, ingest requests go through the
        front door (relay.server.front) and everything else to aiohttp."""
        runner = web.AppRunner(
            app,
            access_log=None,
            # Bodies are decompressed by relay.server.body, within the size limits.
            auto_decompress=False,
            keepalive_timeout=self.config.limits.keepalive_timeout,
            # In-flight requests get a share of the shutdown budget; the rest is for draining.
            shutdown_timeout=self.config.limits.shutdown_timeout / 2,
        )
        await runner.setup()
        self._runners.append(runner)
        aiohttp_server = runner.server
        assert aiohttp_server is not None
        factory: Callable[[], asyncio.BaseProtocol] = aiohttp_server
        routes = front_routes(app) if front else {}
        if routes:
            middlewares = self._middlewares(fold_slashes=False)
            served = {
                name: (wrap(route.handler, middlewares), route) for name, route in routes.items()
            }
            door = FrontDoor(aiohttp_server, served, self.config.limits.keepalive_timeout)
            self.front_door = factory = door
        server = await asyncio.get_running_loop().create_server(
            factory, host, port, reuse_address=True, reuse_port=self.reuse_port or None,
            backlog=1024,
        )  # fmt: skip
        self._servers.append(server)
        bound = [
            s.getsockname()[1]
            for s in server.sockets
            if s.family in (socket.AF_INET, socket.AF_INET6)
        ]
        self.ports.append(bound[0] if bound else port)

    async def stop(self) -> None:
        """Graceful shutdown within ``limits.shutdown_timeout``."""
        # One deadline for the whole sequence, so SIGTERM is honoured within the timeout.
        deadline = time.monotonic() + self.config.limits.shutdown_timeout

        def left() -> float:
            return max(0.5, deadline - time.monotonic())

        # Not ready from now on, as in Relay; this also ends the probe loop.
        await self.health.stop()
        # New requests get 503 from here on; liveness keeps answering until the end.
        self.drain_gate.close()
        if self.forwarder is not None:
            # With a permanent spool, requests still in flight get 503 from here on.
            self.forwarder.begin_shutdown()
        self.queue_gauges.close()
        # Let in-flight requests finish first: they may still accept data.
        await self._finish_requests(left() / 2)
        if self.ingestor is not None:
            # Envelopes still waiting for their project config get an outcome.
            await self.ingestor.stop(min(2.0, left()))
        if self.killswitches is not None:
            await self.killswitches.stop()
        if self.objectstore is not None:
            # After the ingestor: no envelope is being processed any more.
            await self.objectstore.stop()
        if self.metrics is not None:
            # The final flush still needs the forwarder/upstream or Kafka: before them.
            await self.metrics.stop(left())
        if self.forwarder is not None:
            await self.forwarder.drain(left())
        if self.spool is not None:
            # After the drain, which may have spooled what was still in flight.
            await self.spool.stop()
        elif self.disk is not None:
            await self.disk.close()
        await self.outcomes.drain(left())
        if self.projects is not None:
            await self.projects.stop()
        await self.relays.stop()
        await self.upstream.stop()
        if self.producer is not None:
            await self.producer.stop(left())
        # Drained: stop listening (liveness answered until now), then close the connections.
        for server in self._servers:
            server.close()
        for runner in self._runners:
            await runner.cleanup()
        if self.front_door is not None:
            self.front_door.close()
        if self.redis_limiter is not None:
            await self.redis_limiter.close()
        await self.redis_clients.aclose()
        if self.statsd is not None:
            await self.statsd.stop()
            self.statsd = None
        if self.reporter is not None:
            # Last, so that errors while stopping are reported too.
            await self.reporter.stop(min(2.0, left()))
            self.reporter = None
