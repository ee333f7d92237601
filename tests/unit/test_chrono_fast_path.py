"""``parse_datetime``'s one-regex path for common spellings equals the scanners' result."""

from __future__ import annotations

import itertools
import random

from relay.normalize.chrono import ChronoError, _naive, _relaxed, parse_datetime


def _scanners(text: str) -> tuple[int, int] | str:
    try:
        try:
            return _naive(text)
        except ChronoError:
            return _relaxed(text)
    except ChronoError as error:
        return error.reason


def _parsed(text: str) -> tuple[int, int] | str:
    try:
        return parse_datetime(text)
    except ChronoError as error:
        return error.reason


def test_common_spellings_match_the_scanners() -> None:
    dates = ["2026-11-26", "2024-02-29", "2023-02-29", "1970-01-01", "0000-01-01", "9999-12-31"]
    dates += ["2026-13-01", "2026-00-10", "2026-04-31", "2026-01-32", "2026-01-00"]
    times = ["12:03:58", "00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00", "12:00:61"]
    fractions = ["", ".1", ".228814", ".123456789", ".1234567891", ".", ".000000001"]
    offsets = ["", "Z", "z", "+01:00", "-05:30", "+23:59", "+24:00", "-99:00", "+01:60", "+0100"]
    offsets += ["UTC", " Z", "+01"]
    for date, time, fraction, offset in itertools.product(dates, times, fractions, offsets):
        for sep in ("T", "t", " ", "x"):
            text = f"{date}{sep}{time}{fraction}{offset}"
            assert _parsed(text) == _scanners(text), text


def test_random_mutations_match_the_scanners() -> None:
    rng = random.Random(11)
    alphabet = "0123456789-:.TtZz+ \u2212\u0663"
    base = "2026-11-26T12:03:58.228814+01:00"
    for _ in range(20_000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars))
            roll = rng.random()
            if roll < 0.5:
                chars[at] = rng.choice(alphabet)
            elif roll < 0.75:
                del chars[at]
            else:
                chars.insert(at, rng.choice(alphabet))
        text = "".join(chars)
        assert _parsed(text) == _scanners(text), text
