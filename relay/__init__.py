"""relay: an asyncio ingestion proxy chain for Sentry-protocol events."""

import logging

from relay._compiled import stale_compiled_modules, stale_message

__version__ = "0.1.0"

#: The Sentry Relay release whose wire protocol we speak. Reported at registration:
#: upstreams (and Relay's own test suite) refuse relays that report another version.
RELAY_PROTOCOL_VERSION = "26.9.0"

# A mypyc-compiled module older than its source would silently run the old code
# (tools/build_compiled.py): say so at once, before anything runs.
if _stale := stale_compiled_modules():
    logging.getLogger("relay").warning("%s", stale_message(_stale))
