"""The pseudo-random number Relay derives from a trace (or event) id.

Relay seeds a PCG-XSH-RR 64/32 generator (``pcg32``) with the id's 128 bits (high half as
the state, low half as the stream) and draws one ``f64`` in ``[0, 1)`` from it the way the
``rand`` crate does: two 32-bit outputs make a ``u64`` (first one low), whose top 53 bits
are scaled by ``2**-53``. Every relay (and Sentry) thus makes the same decision for the
same id, which keeps a trace whole across projects and hops.
"""

from __future__ import annotations

import uuid
from typing import Final

__all__ = ["Pcg32", "random_from_id"]

_MASK64: Final = (1 << 64) - 1
_MASK32: Final = (1 << 32) - 1
_MULTIPLIER: Final = 6364136223846793005
_SCALE: Final = 1.0 / (1 << 53)


class Pcg32:
    """The standard ``pcg32`` generator (64-bit LCG state, 32-bit output)."""

    __slots__ = ("increment", "state")

    def __init__(self, state: int, stream: int) -> None:
        # The increment must be odd: the stream's top bit is dropped for the low one.
        self.increment = ((stream << 1) | 1) & _MASK64
        # As the reference: move away from the seed before the first output.
        self.state = (state + self.increment) & _MASK64
        self._step()

    def _step(self) -> None:
        self.state = (self.state * _MULTIPLIER + self.increment) & _MASK64

    def next_u32(self) -> int:
        """The next 32-bit output (xorshift high bits, then a random rotation)."""
        old = self.state
        self._step()
        rotation = old >> 59
        shifted = (((old >> 18) ^ old) >> 27) & _MASK32
        return ((shifted >> rotation) | (shifted << ((-rotation) & 31))) & _MASK32

    def next_u64(self) -> int:
        """Two outputs as one 64-bit number, the first in the low half."""
        low = self.next_u32()
        high = self.next_u32()
        return (high << 32) | low

    def next_float(self) -> float:
        """A float in ``[0, 1)`` with 53 random bits."""
        return (self.next_u64() >> 11) * _SCALE


def random_from_id(seed: uuid.UUID) -> float:
    """The deterministic number in ``[0, 1)`` Relay compares sample rates against."""
    value = seed.int
    return Pcg32(value >> 64, value & _MASK64).next_float()
