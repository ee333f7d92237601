"""A real chain of relay processes (configserver, processing, POP) on the session services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.dev.chain import LocalChain
from relay.dev.services import Service


@pytest.fixture(scope="session")
def chain(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Service, kafka_server: Service
) -> Iterator[LocalChain]:
    workdir: Path = tmp_path_factory.mktemp("chain")
    local = LocalChain(workdir, log_level="debug")
    local.start(redis=redis_server, kafka=kafka_server)
    yield local
    local.stop()
