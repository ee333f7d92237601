"""Loads the GeoIP database named by the config, once, for event normalization."""

from __future__ import annotations

import logging

from relay.config import Config
from relay.normalize.geoip import GeoIpError, GeoIpLookup

log = logging.getLogger(__name__)


def open_geoip(config: Config) -> GeoIpLookup | None:
    """The database of ``geoip.path`` (or ``processing.geoip_path``), None if unset.

    As in Relay, a database that cannot be read is logged as an error and the relay runs
    without geo lookups rather than refusing to start.
    """
    path = config.geoip.resolved_path(config.processing)
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            data = file.read()
        lookup = GeoIpLookup(data)
    except (OSError, GeoIpError) as exc:
        log.error("failed to open GeoIP db %r: %s", path, exc)
        return None
    log.info("loaded GeoIP database %s", path)
    return lookup
