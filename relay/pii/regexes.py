"""The built-in detection patterns of the PII rule types, in Python `re` syntax.

Each rule type maps to one or more (pattern kind, regex, replace behaviour) entries:
the kind says whether the regex is matched against the value, the key, or both; the
behaviour says whether a match replaces the given capture groups or the whole value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from relay.pii.regex_compat import RUST_WHITESPACE

SENSITIVE_COOKIE_NAMES: Final = (
    "sentrysid",
    "sudo",
    "su",
    "session",
    "__session",
    "sessionid",
    "user_session",
    "symfony",
    "phpsessid",
    "fasthttpsessionid",
    "mysession",
    "irissessionid",
    "_vercel_jwt",
    "csrf",
    "xsrf",
    "_xsrf",
    "_csrf",
    "csrf-token",
    "csrf_token",
    "xsrf-token",
    "xsrf_token",
    "fastcsrf",
    "_iris_csrf",
)

# Pattern kinds.
VALUE: Final = 0  # match the value, replace the matched groups
KEY: Final = 1  # match the key, replace the whole value
KEY_VALUE: Final = 2  # match the key (replace value) or else the value

# Replace behaviour: a tuple of group indices, or None for "the whole value".
WHOLE_MATCH: Final = (0,)

ANYTHING: Final = re.compile(r".*")

_V4S: Final = r"(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_V4A: Final = rf"{_V4S}\.{_V4S}\.{_V4S}\.{_V4S}"
_V6S: Final = r"[0-9a-fA-F]{1,4}"
_PUNCT: Final = r"!-/:-@\[-`{-~"
# Rust's `\s` (Python's own also matches \x1c-\x1f); `$` below is Rust's: `\Z`.
_WS: Final = RUST_WHITESPACE

IPV4: Final = re.compile(rf"\b{_V4A}\b")
IPV6: Final = re.compile(
    rf"(?i)(?:[{_WS}{_PUNCT}]|^)("
    rf"({_V6S}:){{7}}{_V6S}|"
    rf"({_V6S}:){{1,7}}:|"
    rf"({_V6S}:){{1,6}}::{_V6S}|"
    rf"({_V6S}:){{1,5}}:(:{_V6S}){{1,2}}|"
    rf"({_V6S}:){{1,4}}:(:{_V6S}){{1,3}}|"
    rf"({_V6S}:){{1,3}}:(:{_V6S}){{1,4}}|"
    rf"({_V6S}:){{1,2}}:(:{_V6S}){{1,5}}|"
    rf"{_V6S}:((:{_V6S}){{1,6}})|"
    rf":((:{_V6S}){{1,7}}|:)|"
    rf"fe80:(:{_V6S}){{0,4}}%[0-9a-zA-Z]{{1,}}"
    rf"::(ffff(:0{{1,4}}){{0,1}}:){{0,1}}{_V4A}|"
    rf"({_V6S}:){{1,4}}:{_V4A}"
    rf")([{_WS}{_PUNCT}]|\Z)"
)
IMEI: Final = re.compile(r"\b(\d{2}-?\d{6}-?\d{6}-?\d{1,2})\b")
MAC: Final = re.compile(r"\b([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b")
UUID: Final = re.compile(
    r"(?i)\b[a-z0-9]{8}-?[a-z0-9]{4}-?[a-z0-9]{4}-?[a-z0-9]{4}-?[a-z0-9]{12}\b"
)
EMAIL: Final = re.compile(
    r"\b[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}\b"
)
IBAN: Final = re.compile(
    r"\b(AT|AD|AE|AL|AZ|BA|BE|BG|BH|BR|BY|CH|CR|CY|CZ|DE|DK|DO|EE|EG|ES|FI|FO|FR|GB|GE|GI|GL|"
    r"GR|GT|HR|HU|IE|IL|IQ|IS|IT|JO|KW|KZ|LB|LC|LI|LT|LU|LV|LY|MC|MD|ME|MK|MR|MT|MU|NL|NO|PK|"
    r"PL|PS|PT|QA|RO|RU|RS|SA|SC|SE|SI|SK|SM|ST|SV|TL|TN|TR|UA|VA|VG|XK|DZ|AO|BJ|BF|BI|CV|CM|"
    r"CF|TD|KM|CG|CI|DJ|GQ|GA|GW|HN|IR|MG|ML|MA|MZ|NI|NE|SN|TG)\d{2}[a-zA-Z0-9]{11,29}\b"
)
CREDITCARD: Final = re.compile(
    rf"\b((?:3[47]\d|4\d{{3}}|5[1-5]\d\d|65\d\d|6011)([-{_WS}]?\d){{12}})\b"
)
USERPATH: Final = re.compile(
    r"(?i)(?:(?:\b(?:[a-zA-Z]:[\\/])?(?:users|home|documents and settings|[^/\\]+[/\\]profiles)"
    r"[\\/])|(?:/(?:home|users)/))([^/\\\r\n\x00]+)"
)
PEMKEY: Final = re.compile(
    r"(?s)(?:-----BEGIN[A-Z ]+(?:PRIVATE|PUBLIC) KEY-----[\t ]*\r?\n?)(.+?)"
    r"(?:\r?\n?-----END[A-Z ]+(?:PRIVATE|PUBLIC) KEY-----)"
)
URLAUTH: Final = re.compile(r"\b(?:(?:[a-z0-9+-]+:)?//([a-zA-Z0-9%_.-]+(?::[a-zA-Z0-9%_.-]+)?))@")
USSSN: Final = re.compile(r"\b([0-9]{3}-[0-9]{2}-[0-9]{4})\b")
BEARER: Final = re.compile(rf"(?i)\b(Bearer[{_WS}]+)([^{_WS}]+)")
TOKEN_KEY: Final = re.compile(r"(?i)(token)")
PASSWORD_KEY: Final = re.compile(
    r"(?i)(password|secret|passwd|api[-_]key|apikey|auth|credentials|mysql_pwd|privatekey|"
    rf"private[-_]key|token[^{_WS}]*[:=]|^otp\Z|^two[-_]factor\Z)"
)
COOKIE: Final = re.compile(
    r"(?i)\b(?:(?:" + "|".join(re.escape(n) for n in SENSITIVE_COOKIE_NAMES) + r")(?:__\d+)?)="
    r"([^;]+)"
)

Behaviour = tuple[int, ...] | None
PatternSpec = tuple[int, re.Pattern[str], Behaviour]

BUILTIN_TYPE_PATTERNS: Final[dict[str, tuple[PatternSpec, ...]]] = {
    "anything": ((VALUE, ANYTHING, WHOLE_MATCH),),
    "bearer": ((VALUE, BEARER, WHOLE_MATCH),),
    # Bearer tokens used to be part of the password rule; Relay keeps them there too.
    "password": (
        (VALUE, BEARER, WHOLE_MATCH),
        (KEY, TOKEN_KEY, None),
        (KEY_VALUE, PASSWORD_KEY, None),
    ),
    "imei": ((VALUE, IMEI, WHOLE_MATCH),),
    "mac": ((VALUE, MAC, WHOLE_MATCH),),
    "uuid": ((VALUE, UUID, WHOLE_MATCH),),
    "email": ((VALUE, EMAIL, WHOLE_MATCH),),
    "iban": ((VALUE, IBAN, WHOLE_MATCH),),
    "ip": ((VALUE, IPV4, WHOLE_MATCH), (VALUE, IPV6, (1,))),
    "creditcard": ((VALUE, CREDITCARD, WHOLE_MATCH),),
    "pemkey": ((VALUE, PEMKEY, (1,)),),
    "url_auth": ((VALUE, URLAUTH, (1,)),),
    "us_ssn": ((VALUE, USSSN, WHOLE_MATCH),),
    "userpath": ((VALUE, USERPATH, (1,)),),
    "cookies": ((KEY_VALUE, COOKIE, (1,)),),
}


# -- cheap necessary conditions ---------------------------------------------------------------
# Python's `re` is slow on these large patterns. Each prefilter states a condition every
# match needs, given (text, lowercased text, ASCII digit count). They are checked on the
# current value, a superset of the text the regex actually searches.

Prefilter = Callable[[str, str, int], bool]
# Necessary for a password match on lowercased text: a piece of each of its words, each
# starting with a rarer letter (`re` then skips most positions), or one of its exact values.
_PASSWORD_GATE: Final = re.compile(r"w(?:ord|d)|cret|k(?:ey|en)|uth|dential|ysql_pwd")
_PASSWORD_EXACT: Final = frozenset(("otp", "two-factor", "two_factor"))

_PASSWORD_LOWER: Final = re.compile(PASSWORD_KEY.pattern.removeprefix("(?i)"))
# Necessary parts of a match (starting with a literal lets `re` skip ahead quickly).
_IPV4_SHAPE: Final = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.")
_SSN_SHAPE: Final = re.compile(r"-[0-9][0-9]-")
_FOUR_DIGITS: Final = re.compile(r"\d\d\d\d")
# Necessary for an IBAN match: a country code, check digits and 11 more characters.
_IBAN_SHAPE: Final = re.compile(r"[A-Z][A-Z]\d\d[a-zA-Z0-9]{11}")

PREFILTERS: Final[dict[re.Pattern[str], Prefilter]] = {
    IPV4: lambda t, low, d: d >= 4 and _IPV4_SHAPE.search(t) is not None,
    # Every branch of the IPv6 pattern contains "::" except eight groups (seven colons).
    IPV6: lambda t, low, d: "::" in t or t.count(":") >= 7,
    EMAIL: lambda t, low, d: "@" in t,
    CREDITCARD: lambda t, low, d: d >= 13 and _FOUR_DIGITS.search(t) is not None,
    IMEI: lambda t, low, d: d >= 15,
    IBAN: lambda t, low, d: d >= 2 and _IBAN_SHAPE.search(t) is not None,
    USSSN: lambda t, low, d: d >= 9 and _SSN_SHAPE.search(t) is not None,
    PEMKEY: lambda t, low, d: "-----BEGIN" in t,
    URLAUTH: lambda t, low, d: "@" in t and "//" in t,
    USERPATH: lambda t, low, d: (
        not t.isascii()
        or "users" in low
        or "home" in low
        or "profiles" in low
        or "documents and settings" in low
    ),
    BEARER: lambda t, low, d: not t.isascii() or "bearer" in low,
    # On ASCII text, the case-sensitive lowercase pattern on the lowercased text is exact.
    PASSWORD_KEY: lambda t, low, d: (
        not t.isascii()
        or (
            (_PASSWORD_GATE.search(low) is not None or low in _PASSWORD_EXACT)
            and _PASSWORD_LOWER.search(low) is not None
        )
    ),
    COOKIE: lambda t, low, d: "=" in t,
    MAC: lambda t, low, d: ":" in t or "-" in t,
}


# Prefilters for patterns that come as `pattern` rules (keyed by their source text).
PATTERN_PREFILTERS: Final[dict[str, Prefilter]] = {
    # `@urlauth:legacy`: scheme-relative URL with user and password.
    r"\b((?:[a-z0-9]+:)?//[a-zA-Z0-9%_.-]+:)([a-zA-Z0-9%_.-]+)@": lambda t, low, d: (
        "@" in t and "//" in t
    ),
}


# -- combined triggers ------------------------------------------------------------------------
# For each value pattern, alternatives of which one must match the lowercased text (ASCII
# only) wherever the pattern can match. A rule plan ORs them into one flat alternation:
# most strings match none, and then no rule can change them. Every alternative starts with
# a literal character where possible (a weaker but still necessary condition otherwise):
# then `re` knows the set of characters a match can start with and skips every other
# position without trying the alternatives, which makes the scan several times faster.

_AWS: Final = r"\t\n\x0b\x0c\r "  # Rust's whitespace, restricted to ASCII
_URL_USER: Final = r"//[a-z0-9%_.:+-]*@"
_DIGITS: Final = "0123456789"


def _each_first(chars: str, rest: str) -> tuple[str, ...]:
    """`[chars]rest` as one alternative per first character (each starts with a literal)."""
    return tuple(re.escape(c) + rest for c in chars)


# Necessary for a password key match: a piece of each word of `PASSWORD_KEY` that starts
# with a rarer letter (fewer candidate positions); its anchored words are `EXACT_TRIGGERS`.
_PASSWORD_TRIGGERS: Final = (
    "word", "wd", "cret", "key", "uth", "dential", "ysql_pwd", rf"ken[^{RUST_WHITESPACE}]*[:=]",
)  # fmt: skip

TRIGGERS: Final[dict[re.Pattern[str], tuple[str, ...]]] = {
    IPV4: (r"\.[0-9]{1,3}\.[0-9]{1,3}\.",),
    IPV6: ("::", ":[0-9a-f]{1,4}:[0-9a-f]{1,4}:"),
    IMEI: _each_first(_DIGITS, "[0-9]-?[0-9]{6}"),
    # From the first separator on: two hex digits and another separator.
    MAC: (":[0-9a-f]{2}[:-]", "-[0-9a-f]{2}[:-]"),
    UUID: (r"[a-z0-9]{8}-?[a-z0-9]{4}-?[a-z0-9]{4}",),
    EMAIL: ("@",),
    # From the check digits on (the country code before them is not checked).
    IBAN: _each_first(_DIGITS, "[0-9][a-z0-9]{11}"),
    CREDITCARD: _each_first(_DIGITS, rf"[0-9]{{2}}(?:[-{_AWS}]?[0-9]){{12}}"),
    USERPATH: tuple(rf"{w}[\\/]" for w in ("users", "home", "profiles", "documents and settings")),
    PEMKEY: ("-----begin",),
    URLAUTH: (_URL_USER,),
    USSSN: ("-[0-9][0-9]-",),
    BEARER: (rf"bearer[{_AWS}]",),
    PASSWORD_KEY: _PASSWORD_TRIGGERS,
    COOKIE: ("=",),
}
#: Whole (lowercased) values a pattern matches that its triggers do not cover.
EXACT_TRIGGERS: Final[dict[re.Pattern[str], tuple[str, ...]]] = {
    PASSWORD_KEY: ("otp", "two-factor", "two_factor"),
}
PATTERN_TRIGGERS: Final[dict[str, tuple[str, ...]]] = {
    r"\b((?:[a-z0-9]+:)?//[a-zA-Z0-9%_.-]+:)([a-zA-Z0-9%_.-]+)@": (_URL_USER,),
}


def text_features(text: str) -> tuple[str, int]:
    """Lowercased text and its ASCII digit count (non-ASCII: digits unknown, assume many)."""
    if not text.isascii():
        return text.lower(), 1 << 30
    return text.lower(), sum(map(text.count, "0123456789"))
