"""Event normalization: Relay's store normalization, per relay mode."""

from relay.normalize.basic import prepare_event
from relay.normalize.config import NormalizationConfig
from relay.normalize.event import InvalidTransaction, normalize_event
from relay.normalize.pipeline import normalize_for_relay
from relay.normalize.store import StoreNormalizer

__all__ = [
    "InvalidTransaction",
    "NormalizationConfig",
    "StoreNormalizer",
    "normalize_event",
    "normalize_for_relay",
    "prepare_event",
]
