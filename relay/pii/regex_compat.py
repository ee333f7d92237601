"""Compile Rust-`regex`-syntax patterns (as users write them in piiConfig) for Python.

Relay's patterns follow Rust's `regex` crate. Most syntax is shared with Python's `re`; the
translator below walks the pattern once and handles the differences: Rust rejects
look-around and back-references (so must we), knows POSIX classes like `[[:alpha:]]`, allows
flag groups such as `(?i)` anywhere, the flags `U` (swap greed), `u` (Unicode) and `R`
(CRLF), and nested repetitions like `a**` (Python would read `a*+` as possessive).

Unicode property classes (`\\p{Greek}`) and class set operations (`[\\pL&&\\p{Lu}]`) have no
`re` equivalent: patterns using them are compiled with the `regex` module in its V1 mode.
Everything else stays on `re`, which is faster for the common patterns.

Relay also compiles with a 256 KiB size limit on the compiled program; `size_estimate`
approximates that (see there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, cast

import regex

from relay.pii.regex_size import (
    BASE_COST,
    CLASS_UPPER_BOUND,
    COMPILED_PATTERN_MAX_SIZE,
    DOT_COST,
    class_cost,
    literal_cost,
    optional_cost,
)

_POSIX_CLASSES: Final = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_POSIX: Final = re.compile(r"\[:(\^?)([a-z]+):\]")

# Rust's `\s` is Unicode White_Space; Python's also matches \x1c-\x1f (str.isspace()).
RUST_WHITESPACE: Final = (
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# With the `u` flag off, Rust's Perl classes are ASCII-only.
_ASCII_PERL: Final = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\x0b\\x0c\\r "}
_UNICODE_PERL: Final = {"s": RUST_WHITESPACE}
_ASCII_WORD: Final = "[0-9A-Za-z_]"
# Word boundaries, with `{w}` for the word class (Unicode `\w`, or ASCII under `(?-u)`).
_WORD_BOUNDARIES: Final = {
    "start": "(?<!{w})(?={w})",
    "end": "(?<={w})(?!{w})",
    "start-half": "(?<!{w})",
    "end-half": "(?!{w})",
}
_ASCII_BOUNDARY: Final = "(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
# A class escape that stands on its own outside brackets (`\d`, `\p{gc=L}`).
_SINGLE_CLASS: Final = re.compile(r"\\[dwDW]|\\[pP]\{[^}]*\}")
_COUNTED: Final = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_FLAG_LETTERS: Final = "imsUuxR"
# A class that matches nothing (an empty operand of a set operation).
_EMPTY_SET: Final = "[^\\x00-\\U0010FFFF]"


class RegexError(ValueError):
    """A pattern that Relay's regex engine would refuse."""


@dataclass(frozen=True, slots=True)
class _Flags:
    i: bool = False
    m: bool = False
    s: bool = False
    swap_greed: bool = False  # U
    unicode: bool = True  # u
    verbose: bool = False  # x
    crlf: bool = False  # R


@dataclass(slots=True)
class _Frame:
    """One open group: where it starts in the output and what its atoms cost."""

    flags: _Flags
    start: int  # index in the output of the group's opening text
    capture: bool
    closers: int = 0  # scoped `(?i:` groups opened for mid-group flag changes
    reopen: list[str] = field(default_factory=list)  # their openers, for each `|` branch
    total: float = 0.0
    atom_start: int | None = None
    atom_cost: float = 0.0
    atom_quantified: bool = False
    atom_assertion: bool = False


@dataclass(frozen=True, slots=True)
class Translation:
    """A Rust pattern rewritten for Python, with the engine it needs."""

    pattern: str
    needs_regex_module: bool
    size_estimate: float


class _Translator:
    """Single pass over a Rust pattern; keeps a stack of open groups and their flags."""

    def __init__(self, pattern: str, case_insensitive: bool) -> None:
        self.src = pattern
        self.i = 0
        self.out: list[str] = []
        self.frames = [_Frame(_Flags(i=case_insensitive), 0, capture=False)]
        self.needs_regex = False
        self.precise = False  # cost classes exactly (slow) instead of by upper bound

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    def run(self) -> Translation:
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            flags = self.frame.flags
            if flags.verbose and c in " \t\n\r\x0b\x0c":
                self.i += 1
            elif flags.verbose and c == "#":
                end = src.find("\n", self.i)
                self.i = len(src) if end == -1 else end + 1
            elif c == "\\":
                self._escape()
            elif c == "[":
                text, cost = self._class()
                self._atom(text, cost)
            elif c == "(":
                self._open_group()
            elif c == ")":
                self._close_group()
            elif c == "|":
                self._alternate()
            elif c in "*+?":
                self.i += 1
                self._quantify(c, 1 if c == "+" else 0, 1 if c == "?" else None)
            elif c == "{":
                counted = _COUNTED.match(src, self.i)
                if counted is None:
                    raise RegexError("invalid counted repetition")
                self.i = counted.end()
                low = int(counted.group(1))
                high = low if counted.group(2) is None else _opt_int(counted.group(3))
                if high is not None and high < low:
                    raise RegexError("invalid repetition count range")
                self._quantify(counted.group(0), low, high)
            elif c == "$":
                self.i += 1
                self._atom(self._end_of_line(flags), 0.0, assertion=True)
            elif c == "^":
                self.i += 1
                self._atom(self._start_of_line(flags), 0.0, assertion=True)
            elif c == ".":
                self.i += 1
                if not flags.unicode:
                    raise RegexError("pattern can match invalid UTF-8")
                # `s` is a Python flag too; in CRLF mode `.` excludes `\r` as well. (Kept as
                # `.` otherwise: the attachment scrubber recompiles it with DOTALL.)
                crlf = flags.crlf and not flags.s
                self._atom("[^\\r\\n]" if crlf else ".", DOT_COST)
            else:
                self.i += 1
                self._atom(re.escape(c) if c in "\\.^$*+?{}[]|()" else c, self._lit_cost(c))
        if len(self.frames) > 1:
            raise RegexError("unclosed group")
        self._close_scoped(self.frame)
        size = BASE_COST + self._frame_cost(self.frame)
        return Translation("".join(self.out), self.needs_regex, size)

    # -- atoms, repetition, alternation ------------------------------------------------------

    def _lit_cost(self, c: str) -> float:
        return literal_cost(c, self.frame.flags.i)

    def _atom(self, text: str, cost: float, assertion: bool = False) -> None:
        frame = self.frame
        frame.total += frame.atom_cost
        frame.atom_start = len(self.out)
        frame.atom_cost = cost
        frame.atom_quantified = False
        frame.atom_assertion = assertion
        self.out.append(text)

    def _quantify(self, op: str, low: int, high: int | None) -> None:
        frame = self.frame
        if frame.atom_start is None:
            raise RegexError("repetition operator missing expression")
        lazy = self.src.startswith("?", self.i)
        if lazy:
            self.i += 1
        if frame.flags.swap_greed:
            lazy = not lazy
        if frame.atom_quantified or frame.atom_assertion:
            # Rust repeats a repetition (`a**` is `(?:a*)*`); Python would reject it or read
            # `a*+` as possessive. Assertions need a group before Python lets them repeat.
            self.out.insert(frame.atom_start, "(?:")
            self.out.append(")")
        self.out.append(op + ("?" if lazy else ""))
        frame.atom_quantified = True
        frame.atom_assertion = False
        unit = frame.atom_cost
        if high is None:
            # An unbounded tail is one looping copy (`x+` costs about as much as `x?`).
            frame.atom_cost = optional_cost(unit) + unit * max(low - 1, 0)
        else:
            frame.atom_cost = unit * low + optional_cost(unit) * (high - low)

    def _alternate(self) -> None:
        self.i += 1
        frame = self.frame
        frame.total += frame.atom_cost
        frame.atom_cost = 0.0
        frame.atom_start = None
        # Scoped flag groups opened in this branch end with it; the next branch reopens them,
        # as a Rust flag applies up to the end of the enclosing group, across `|`.
        self.out.append(")" * frame.closers + "|" + "".join(frame.reopen))

    def _close_scoped(self, frame: _Frame) -> None:
        self.out.append(")" * frame.closers)

    @staticmethod
    def _frame_cost(frame: _Frame) -> float:
        return frame.total + frame.atom_cost

    # -- groups and flags --------------------------------------------------------------------

    def _open_group(self) -> None:
        src = self.src
        flags = self.frame.flags
        if not src.startswith("(?", self.i):
            self.i += 1
            self._push("(", flags, capture=True)
            return
        rest = src[self.i + 2 : self.i + 4]
        if rest[:1] in ("=", "!") or rest in ("<=", "<!"):
            raise RegexError("look-around is not supported")
        if rest[:1] == "#" or rest[:2] in ("P=", "P>"):
            # Comments, named back-references and recursion: Python-only syntax.
            raise RegexError("unsupported group syntax")
        if rest[:1] == "<" or rest[:2] == "P<":
            start = self.i + (3 if rest[:1] == "<" else 4)
            end = src.find(">", start)
            if end == -1:
                raise RegexError("unclosed capture group name")
            self.i = end + 1
            # Python validates the name (Rust also allows `.`, `[` and `]` in names).
            self._push(f"(?P<{src[start:end]}>", flags, capture=True)
            return
        end = self.i + 2
        while end < len(src) and src[end] not in ":)":
            end += 1
        if end >= len(src):
            raise RegexError("unclosed group")
        spec = src[self.i + 2 : end]
        self.i = end + 1
        if not spec and src[end] == ":":
            self._push("(?:", flags, capture=False)
            return
        new_flags = _parse_flags(spec, flags)
        opener = _python_flags(flags, new_flags)
        if src[end] == ":":
            self._push(opener or "(?:", new_flags, capture=False)
            return
        # A bare `(?i)`: it applies to the rest of the enclosing group. Python only allows
        # global flags at the very start, so scope the rest of the group instead.
        frame = self.frame
        frame.flags = new_flags
        frame.total += frame.atom_cost
        frame.atom_cost = 0.0
        frame.atom_start = None
        if opener and not self.out and len(self.frames) == 1 and "-" not in opener:
            # Flags at the very start of the pattern: Python takes them as global flags.
            self.out.append(opener[:-1] + ")")
        elif opener:
            self.out.append(opener)
            frame.closers += 1
            frame.reopen.append(opener)

    def _push(self, opener: str, flags: _Flags, capture: bool) -> None:
        self.frames.append(_Frame(flags, len(self.out), capture))
        self.out.append(opener)

    def _close_group(self) -> None:
        self.i += 1
        if len(self.frames) == 1:
            raise RegexError("unopened group")
        frame = self.frames.pop()
        self._close_scoped(frame)
        self.out.append(")")
        cost = self._frame_cost(frame) + (64.0 if frame.capture else 0.0)
        parent = self.frame
        parent.total += parent.atom_cost
        parent.atom_start = frame.start
        parent.atom_cost = cost
        parent.atom_quantified = False
        parent.atom_assertion = False

    # -- anchors -----------------------------------------------------------------------------

    @staticmethod
    def _end_of_line(flags: _Flags) -> str:
        # Without `m`, Rust's `$` is the end of the text; Python's `$` also matches before a
        # final newline.
        if not flags.m:
            return "\\Z"
        if flags.crlf:
            return "(?:(?=\\r)|(?<!\\r)(?=\\n)|\\Z)"
        return "(?m:$)"

    @staticmethod
    def _start_of_line(flags: _Flags) -> str:
        if not flags.m:
            return "^"  # Python's `^` is the start of the text too, without re.MULTILINE
        if flags.crlf:
            return "(?:\\A|(?<=\\n)|(?<=\\r)(?!\\n))"
        return "(?m:^)"

    # -- escapes -----------------------------------------------------------------------------

    def _escape(self) -> None:
        src = self.src
        if self.i + 1 >= len(src):
            raise RegexError("incomplete escape sequence")
        flags = self.frame.flags
        nxt = src[self.i + 1]
        if nxt.isdigit():
            raise RegexError("backreferences are not supported")
        if nxt == "b" and src.startswith("{", self.i + 2):
            # Rust's special word boundaries `\b{start}`, `\b{end}`, `\b{start-half}`...
            end = src.find("}", self.i + 3)
            name = src[self.i + 3 : end] if end != -1 else ""
            special = _WORD_BOUNDARIES.get(name)
            if special is None and not _COUNTED.fullmatch(src, self.i + 2, end + 1):
                raise RegexError("invalid word boundary")
            if special is not None:
                self.i = end + 1
                self._atom(special.format(w=_word_class(flags)), 0.0, assertion=True)
                return
            # `\b{2}` is a repeated `\b`: fall through, the `{2}` follows as a repetition.
        if nxt in "<>":
            self.i += 2
            boundary = _WORD_BOUNDARIES["start" if nxt == "<" else "end"]
            self._atom(boundary.format(w=_word_class(flags)), 0.0, assertion=True)
            return
        if nxt in "bB":
            self.i += 2
            text = "\\" + nxt
            if not flags.unicode:
                # Python's inline ASCII flag cannot be switched back off inside, so spell
                # out an ASCII word boundary.
                ascii_boundary = _ASCII_BOUNDARY.format(w=_ASCII_WORD)
                text = ascii_boundary if nxt == "b" else f"(?!{ascii_boundary})"
            self._atom(text, 0.0, assertion=True)
            return
        if nxt in "Az":
            self.i += 2
            self._atom("\\A" if nxt == "A" else "\\Z", 0.0, assertion=True)
            return
        item = self._class_escape(in_class=False)
        if item.is_class and not _SINGLE_CLASS.fullmatch(item.text):
            self._atom(f"[{item.text}]", item.cost)
        else:
            self._atom(item.text, item.cost)

    def _class_escape(self, in_class: bool) -> _Item:
        """An escape at `self.i` (a backslash): a literal or a class, as class-body text."""
        src = self.src
        flags = self.frame.flags
        nxt = src[self.i + 1]
        if nxt in "pP":
            return self._property(negated=nxt == "P")
        if nxt in "dswDSW":
            self.i += 2
            lower = nxt.lower()
            if not flags.unicode:
                if nxt != lower:
                    raise RegexError("pattern can match invalid UTF-8")
                return _Item(_ASCII_PERL[lower], True, literal_cost("a", flags.i) * 2)
            body = _UNICODE_PERL.get(lower, "\\" + lower)
            if nxt != lower:
                if body == "\\" + lower:
                    body = "\\" + nxt
                else:
                    # `\S` in a class: only a nested set (V1) can negate a range list.
                    body = f"^{body}"
                    if in_class:
                        self.needs_regex = True
                        body = f"[{body}]"
                    return _Item(body, not in_class, self._perl_cost(nxt))
            return _Item(body, True, self._perl_cost(nxt))
        if nxt == "x" and src.startswith("{", self.i + 2):
            # Rust's `\x{10FFFF}`: any code point in hex.
            end = src.find("}", self.i + 3)
            digits = src[self.i + 3 : end] if end != -1 else ""
            if not digits or len(digits) > 8 or not _is_hex(digits):
                raise RegexError("invalid hexadecimal escape")
            self.i = end + 1
            return self._code_point(int(digits, 16))
        if nxt == "x":
            digits = src[self.i + 2 : self.i + 4]
            if len(digits) != 2 or not _is_hex(digits):
                raise RegexError("invalid hexadecimal escape")
            self.i += 4
            item = self._code_point(int(digits, 16))
            # Keep `\xHH` as written: the attachment scrubber reuses it as a byte pattern.
            return _Item(f"\\x{digits}", False, item.cost)
        self.i += 2
        return _Item("\\" + nxt, False, literal_cost(nxt, flags.i))

    def _code_point(self, value: int) -> _Item:
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise RegexError("invalid hexadecimal escape")
        if value > 0x7F and not self.frame.flags.unicode:
            raise RegexError("pattern can match invalid UTF-8")
        return _Item(f"\\U{value:08X}", False, literal_cost(chr(value), self.frame.flags.i))

    def _perl_cost(self, letter: str) -> float:
        if not self.precise:
            return CLASS_UPPER_BOUND
        text = f"[{_UNICODE_PERL.get(letter, chr(92) + letter)}]"
        if letter in "SDW" and letter.lower() in _UNICODE_PERL:
            text = f"[^{_UNICODE_PERL[letter.lower()]}]"
        return class_cost(text, False, self.frame.flags.i)

    def _property(self, negated: bool) -> _Item:
        """`\\pL`, `\\p{Greek}`, `\\P{sc=Greek}`: Unicode properties (the `regex` module)."""
        src = self.src
        if not self.frame.flags.unicode:
            raise RegexError("Unicode not allowed here")
        if src.startswith("{", self.i + 2):
            end = src.find("}", self.i + 3)
            if end == -1:
                raise RegexError("unclosed Unicode class literal")
            name = src[self.i + 3 : end]
            self.i = end + 1
        elif self.i + 2 < len(src):
            name = src[self.i + 2]
            self.i += 3
        else:
            raise RegexError("incomplete Unicode class")
        # Rust matches property names loosely: case, spaces, `_` and `-` are ignored.
        loose = re.sub(r"[\s_-]", "", name)
        if "!=" in loose:
            key, _, value = loose.partition("!=")
            negated, loose = not negated, f"{key}={value}"
        query = _property_query(loose)
        if query is None:
            raise RegexError(f"unrecognized Unicode class {name!r}")
        text = f"\\{'P' if negated else 'p'}{{{query}}}"
        self.needs_regex = True
        cost = CLASS_UPPER_BOUND
        if self.precise:
            cost = class_cost(f"[{text}]", True, self.frame.flags.i)
        return _Item(text, True, cost)

    # -- bracketed classes -------------------------------------------------------------------

    def _class(self) -> tuple[str, float]:
        """A `[...]` class at `self.i`, translated; nested sets and set operations use V1."""
        src = self.src
        self.i += 1
        negated = src.startswith("^", self.i)
        if negated:
            self.i += 1
            if not self.frame.flags.unicode:
                raise RegexError("pattern can match invalid UTF-8")
        operands: list[str] = []
        ops: list[str] = []
        current: list[str] = []
        if src.startswith("]", self.i):
            current.append("\\]")
            self.i += 1
        # Leading `-`s are literals in Rust (`[--x]` is not a set difference).
        while src.startswith("-", self.i):
            current.append("\\-")
            self.i += 1
        while True:
            if self.i >= len(src):
                raise RegexError("unclosed character class")
            c = src[self.i]
            if c == "]":
                self.i += 1
                break
            op = src[self.i : self.i + 2]
            if op in ("&&", "--", "~~"):
                operands.append("".join(current))
                ops.append(op)
                current = []
                self.i += 2
                continue
            if c == "[":
                posix = _POSIX.match(src, self.i)
                if posix is not None and posix.group(2) in _POSIX_CLASSES:
                    body = _POSIX_CLASSES[posix.group(2)]
                    if posix.group(1):
                        self.needs_regex = True
                        body = f"[^{body}]"
                    current.append(body)
                    self.i = posix.end()
                    continue
                nested, _ = self._class()
                self.needs_regex = True
                current.append(nested)
                continue
            item = self._class_item(first=not current and not operands)
            if (
                src.startswith("-", self.i)
                and not src.startswith("--", self.i)
                and not src.startswith("]", self.i + 1)
            ):
                self.i += 1
                if self.i >= len(src) or src[self.i] == "[":
                    raise RegexError("invalid range")
                high = self._class_item(first=False)
                if high.is_class:
                    raise RegexError("invalid range boundary")
                current.append(f"{item.text}-{high.text}")
                continue
            current.append(item.text)
        if ops:
            # Rust evaluates `&&`, `--` and `~~` left to right at one precedence; the regex
            # module ranks them, so nest every step explicitly.
            self.needs_regex = True
            operands.append("".join(current))
            expr = _operand(operands[0])
            for op, right in zip(ops, operands[1:], strict=True):
                expr = f"[{expr}{op}{_operand(right)}]"
            body = expr
        else:
            body = "".join(current)
            if not body:
                raise RegexError("empty character class")
        text = f"[{'^' if negated else ''}{body}]"
        cost = CLASS_UPPER_BOUND
        if self.precise:
            cost = class_cost(text, self.needs_regex, self.frame.flags.i)
        return text, cost

    def _class_item(self, first: bool) -> _Item:
        src = self.src
        c = src[self.i]
        if c == "\\":
            if self.i + 1 >= len(src):
                raise RegexError("incomplete escape sequence")
            return self._class_escape(in_class=True)
        self.i += 1
        # Escape only what an engine could read as syntax, so that common patterns translate
        # to themselves: doubled `|`, `&`, `~` (set operators in V1; literals in Rust), and a
        # leading `:` (the regex module would read a nested `[:foo:]` as a POSIX class).
        doubled = c in "&~|" and (src.startswith(c, self.i) or src[self.i - 2] == c)
        if doubled or (c == ":" and first) or c in "[]":
            return _Item("\\" + c, False, 0.0)
        return _Item(c, False, 0.0)


@dataclass(frozen=True, slots=True)
class _Item:
    text: str
    is_class: bool
    cost: float


def _operand(body: str) -> str:
    return f"[{body}]" if body else _EMPTY_SET


# Property names the regex module knows but Rust does not (POSIX-style helpers).
_NOT_RUST_PROPERTIES: Final = frozenset({"word", "xdigit", "alnum", "blank", "graph", "print"})
_PROPERTY_KEYS: Final = {
    "gc": "gc",
    "generalcategory": "gc",
    "sc": "sc",
    "script": "sc",
    "scx": "scx",
    "scriptextensions": "scx",
}


def _property_query(loose: str) -> str | None:
    """The regex-module spelling of a Rust Unicode class name, or None if Rust rejects it.

    Rust resolves a bare name as a general category, a script (not its extensions), a
    binary property, or `Any`/`ASCII`/`Assigned`; `key=value` only for categories, scripts
    and script extensions. Unicode blocks (which the regex module also knows) are not valid.
    """
    if not re.fullmatch(r"[A-Za-z0-9=.]+", loose):
        return None
    key, sep, value = loose.partition("=")
    if sep:
        prefix = _PROPERTY_KEYS.get(key.lower())
        candidates = [f"{prefix}={value}"] if prefix and value else []
    elif loose.lower() in _NOT_RUST_PROPERTIES:
        candidates = []
    elif loose.lower() in ("any", "ascii", "assigned"):
        candidates = [loose]
    else:
        candidates = [f"gc={loose}", f"sc={loose}", f"{loose}=Yes"]
    for candidate in candidates:
        try:
            regex.compile(f"\\p{{{candidate}}}")
        except regex.error:
            continue
        return candidate
    return None


def _word_class(flags: _Flags) -> str:
    return "\\w" if flags.unicode else _ASCII_WORD


def _opt_int(text: str | None) -> int | None:
    return int(text) if text else None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _parse_flags(spec: str, current: _Flags) -> _Flags:
    """Apply a Rust flag group (`i`, `-U`, `x-s`) to the current flags; reject bad groups."""
    if not spec:
        raise RegexError("empty flag group")
    seen: set[str] = set()
    value = True
    negations = 0
    changes: dict[str, bool] = {}
    for ch in spec:
        if ch == "-":
            negations += 1
            if negations > 1:
                raise RegexError("repeated negation in flag group")
            value = False
            continue
        if ch not in _FLAG_LETTERS:
            raise RegexError(f"unrecognized flag {ch!r}")
        if ch in seen:
            raise RegexError(f"duplicate flag {ch!r}")
        seen.add(ch)
        changes[ch] = value
    if spec.endswith("-"):
        raise RegexError("dangling flag negation")

    def get(letter: str, old: bool) -> bool:
        return changes.get(letter, old)

    return _Flags(
        i=get("i", current.i),
        m=get("m", current.m),
        s=get("s", current.s),
        swap_greed=get("U", current.swap_greed),
        unicode=get("u", current.unicode),
        verbose=get("x", current.verbose),
        crlf=get("R", current.crlf),
    )


def _python_flags(old: _Flags, new: _Flags) -> str:
    """The scoped Python group opener (`(?i-s:`) for the flags Python handles itself."""
    on = "".join(f for f in "is" if getattr(new, f) and not getattr(old, f))
    off = "".join(f for f in "is" if getattr(old, f) and not getattr(new, f))
    if not on and not off:
        return ""
    return f"(?{on}{'-' + off if off else ''}:"


def translate(pattern: str, case_insensitive: bool = False) -> Translation:
    """Translate Rust regex syntax into an equivalent Python pattern (`re` or V1 `regex`)."""
    translation = _Translator(pattern, case_insensitive).run()
    if translation.size_estimate > COMPILED_PATTERN_MAX_SIZE:
        # The quick estimate bounds every class from above; only near the limit is it worth
        # measuring the classes one by one.
        precise = _Translator(pattern, case_insensitive)
        precise.precise = True
        translation = precise.run()
        if translation.size_estimate > COMPILED_PATTERN_MAX_SIZE:
            raise RegexError("compiled regex exceeds size limit")
    return translation


def compile_rust_regex(pattern: str, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a Relay (Rust syntax) pattern; raises RegexError like Relay's validation.

    Patterns with Unicode properties or class set operations compile with the `regex`
    module; its Pattern has the same methods as `re`'s (finditer, search, groups, pattern,
    flags), which is all the scrubbers use, so it is returned under `re`'s type.
    """
    translation = translate(pattern, case_insensitive)
    flags = re.IGNORECASE if case_insensitive else 0
    if translation.needs_regex_module:
        try:
            # V1 for nested sets and set operations; `(?-f)`: Rust folds case simply.
            compiled = regex.compile("(?-f)" + translation.pattern, regex.V1 | flags)
        except (regex.error, ValueError, OverflowError) as exc:
            raise RegexError(f"regex parse error: {exc}") from exc
        return cast("re.Pattern[str]", compiled)
    try:
        return re.compile(translation.pattern, flags)
    except (re.error, ValueError, OverflowError) as exc:
        raise RegexError(f"regex parse error: {exc}") from exc


def rust_escape(text: str) -> str:
    """Escape like Rust's `regex::escape` (which, unlike Python's, leaves spaces alone)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~" else c for c in text)
