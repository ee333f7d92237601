"""Session fixtures: a real Redis and a real Kafka-compatible broker on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from relay._compiled import stale_compiled_modules, stale_message
from relay.dev.services import Service, start_kafka, start_redis

# Property tests explore at random on developer machines; in CI they replay a fixed
# sequence so that a landing is never decided by a new random draw.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run on stale mypyc-compiled modules: the tests would check old code."""
    stale = stale_compiled_modules()
    if stale:
        raise pytest.UsageError(stale_message(stale))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[Service]:
    service = start_kafka()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: Service) -> str:
    return f"redis://{redis_server.address}/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: Service) -> str:
    return kafka_server.address
