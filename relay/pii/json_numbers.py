"""JSON numbers read and written the way Relay's JSON library (serde_json) does.

Relay re-serializes scrubbed JSON attachments, so numbers come out as serde_json prints
them, not as they were sent: integers that fit 64 bits stay integers (`-0` becomes the
float `-0.0`), everything else becomes a 64-bit float, printed with the shortest
round-trip digits as serde_json 1.0.150 (its `zmij` formatter) does: plain notation
while the decimal point falls within 16 digits (`100000.0`, `0.00001`), scientific
beyond (`1e+16`, `1.5e-7`). serde_json (without its
`float_roundtrip` feature, as Relay builds it) reads floats by keeping at most the
digits that fit an unsigned 64-bit integer and scaling by powers of ten, which is not
always correctly rounded; `parse_number` reproduces that arithmetic exactly.
"""

from __future__ import annotations

import re
from typing import Final

U64_MAX: Final = (1 << 64) - 1
I64_MIN: Final = -(1 << 63)
I32_MAX: Final = (1 << 31) - 1
I32_MIN: Final = -(1 << 31)

# The powers of ten serde_json scales by (each the nearest double to 10**k).
_POW10: Final = tuple(float(f"1e{k}") for k in range(309))

# Greedy shape of a number token; `parse_number` checks the parts serde_json requires.
NUMBER_RE: Final = re.compile(r"-?([0-9]+)(\.[0-9]*)?([eE][-+]?[0-9]*)?")


class NumberError(ValueError):
    """Not a number serde_json accepts (bad syntax, or a float out of range)."""


def _saturate_i32(value: int) -> int:
    return max(I32_MIN, min(I32_MAX, value))


def _scale(positive: bool, significand: int, exponent: int) -> float:
    """serde_json's float assembly: one multiplication or division by a power of ten."""
    value = float(significand)
    while True:
        magnitude = -exponent if exponent < 0 else exponent
        if magnitude < len(_POW10):
            if exponent >= 0:
                value *= _POW10[magnitude]
                if value == float("inf"):
                    raise NumberError("number out of range")
            else:
                value /= _POW10[magnitude]
            break
        if value == 0.0:
            break
        if exponent >= 0:
            raise NumberError("number out of range")
        value /= 1e308
        exponent += 308
    return value if positive else -value


def parse_number(token: str) -> int | float:
    """The value serde_json reads from a number token matched by `NUMBER_RE`.

    Raises NumberError for tokens serde_json rejects (leading zeros, a dot or exponent
    without digits) and for floats too large for a double.
    """
    positive = not token.startswith("-")
    match = NUMBER_RE.fullmatch(token)
    if match is None:
        raise NumberError("invalid number")
    integer, fraction, exp_part = match.groups()
    if len(integer) > 1 and integer[0] == "0":
        raise NumberError("invalid number")
    if fraction == ".":
        raise NumberError("invalid number")
    if exp_part is not None and not exp_part.lstrip("eE+-"):
        raise NumberError("invalid number")

    if fraction is None and exp_part is None:
        value = int(integer)
        if positive and value <= U64_MAX:
            return value
        if not positive and 0 < value <= -I64_MIN:
            return -value
        if not positive and value == 0:
            return -0.0
        # Past 64 bits serde_json switches to a float (`_scale` below).

    # Digits accumulate while the significand fits a u64: once an integer digit does not
    # fit, each later integer digit scales by ten; once a fraction digit does not fit, the
    # rest are dropped (truncation). The two checks are independent, as in serde_json.
    significand = 0
    exponent = 0
    for char in integer:
        digit = ord(char) - 48
        if exponent or significand * 10 + digit > U64_MAX:
            exponent += 1
        else:
            significand = significand * 10 + digit
    if fraction is not None:
        for char in fraction[1:]:
            digit = ord(char) - 48
            if significand * 10 + digit > U64_MAX:
                break
            significand = significand * 10 + digit
            exponent -= 1
    if exp_part is not None:
        digits = exp_part.lstrip("eE")
        negative_exp = digits.startswith("-")
        digits = digits.lstrip("+-")
        exp_value = int(digits)
        if exp_value > I32_MAX:
            # An exponent past 32 bits: zero, or out of range for positive exponents.
            if significand != 0 and not negative_exp:
                raise NumberError("number out of range")
            return 0.0 if positive else -0.0
        exponent = _saturate_i32(exponent - exp_value if negative_exp else exponent + exp_value)
    return _scale(positive, significand, exponent)


def format_float(value: float) -> str:
    """A finite double as serde_json prints it."""
    if value == 0.0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    text = repr(value)  # shortest round-trip digits, as serde_json
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = int(digits) * 10**exp, digits without trailing zeros
    exp = (int(exp_text) if exp_text else 0) - len(frac)
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    point = length + exp  # position of the decimal point relative to the digits
    if exp >= 0 and point <= 16:
        return f"{sign}{digits}{'0' * exp}.0"
    if 0 < point <= 16:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    exponent = f"e{point - 1:+d}" if point > 1 else f"e{point - 1}"
    if length == 1:
        return f"{sign}{digits}{exponent}"
    return f"{sign}{digits[0]}.{digits[1:]}{exponent}"


def format_number(value: int | float) -> str:
    """An integer as is, a float as `format_float` prints it."""
    if isinstance(value, int):
        return str(value)
    return format_float(value)
