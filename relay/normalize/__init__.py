"""Event normalization (the light, always-on part; full normalization lands with issue 6)."""

from relay.normalize.basic import prepare_event

__all__ = ["prepare_event"]
