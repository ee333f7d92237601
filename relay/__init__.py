"""relay: an asyncio ingestion proxy chain for Sentry-protocol events."""

__version__ = "0.1.0"

#: The Sentry Relay release whose wire protocol we speak. Reported at registration:
#: upstreams (and Relay's own test suite) refuse relays that report another version.
RELAY_PROTOCOL_VERSION = "26.9.0"
