"""Compile Rust-`regex`-syntax patterns (as users write them in piiConfig) with Python's `re`.

Relay's patterns follow Rust's `regex` crate. Most syntax is shared; the differences that
matter are handled here: Rust rejects look-around and back-references (so must we), Rust
knows POSIX classes like `[[:alpha:]]`, and allows flag groups such as `(?i)` anywhere.
"""

from __future__ import annotations

import re

_POSIX_CLASSES = {
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


# Rust's `\s` is Unicode White_Space; Python's also matches \x1c-\x1f (str.isspace()).
RUST_WHITESPACE = (
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
_MULTILINE_FLAG = re.compile(r"\(\?[a-zA-Z]*m")


class RegexError(ValueError):
    """A pattern that Relay's regex engine would refuse."""


def translate(pattern: str) -> str:
    """Translate Rust regex syntax into an equivalent Python `re` pattern."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    # Without the `m` flag Rust's `$` is the end of the text; Python's `$` also matches
    # before a final newline. (With `m` anywhere, both mean end of line: left as is.)
    end_of_text = "$" if _MULTILINE_FLAG.search(pattern) else "\\Z"
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise RegexError("incomplete escape sequence")
            nxt = pattern[i + 1]
            if nxt.isdigit() and not in_class:
                raise RegexError("backreferences are not supported")
            if nxt == "z":
                out.append("\\Z")
            elif nxt == "s":
                out.append(RUST_WHITESPACE if in_class else f"[{RUST_WHITESPACE}]")
            elif nxt == "S" and not in_class:
                out.append(f"[^{RUST_WHITESPACE}]")
            elif nxt in "<>":
                # Rust `\<`/`\>` are word-start/end assertions; approximate with \b.
                out.append("\\b")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end != -1 else ""
                negated = name.startswith("^")
                cls = _POSIX_CLASSES.get(name.lstrip("^"))
                if cls is None or negated:
                    raise RegexError(f"unsupported class {name!r}")
                out.append(cls)
                i = end + 2
                continue
            if c == "]":
                in_class = False
            elif c == "[":
                # Rust supports nested classes; Python does not: treat literally.
                out.append("\\[")
                i += 1
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if c == "$":
            out.append(end_of_text)
            i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            if rest[:1] in ("=", "!") or rest in ("<=", "<!"):
                raise RegexError("look-around is not supported")
            if rest[:1] == "<" or rest[:2] == "P<":
                start = i + (3 if rest[:1] == "<" else 4)
                out.append("(?P<")
                i = start
                continue
        out.append(c)
        i += 1
    return _hoist_flags("".join(out))


_FLAG_GROUP = re.compile(r"\(\?([imsxU-]+)\)")


def _hoist_flags(pattern: str) -> str:
    """Rust allows `(?i)` mid-pattern; Python only at the start. Hoist or scope them."""
    match = _FLAG_GROUP.search(pattern)
    if match is None:
        return pattern
    if match.start() == 0:
        flags = match.group(1)
        if "-" in flags or "U" in flags:
            raise RegexError("unsupported flag group")
        return f"(?{flags})" + _hoist_flags(pattern[match.end() :])
    # A mid-pattern flag applies to the rest of the enclosing group; scope it that way.
    flags = match.group(1)
    if "-" in flags or "U" in flags:
        raise RegexError("unsupported flag group")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return f"{head}(?{flags}:{_hoist_flags(tail)})"


def compile_rust_regex(pattern: str, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a Relay (Rust syntax) pattern; raises RegexError like Relay's validation."""
    try:
        translated = translate(pattern)
        return re.compile(translated, re.IGNORECASE if case_insensitive else 0)
    except re.error as exc:
        raise RegexError(f"regex parse error: {exc}") from exc


def rust_escape(text: str) -> str:
    """Escape like Rust's `regex::escape` (which, unlike Python's, leaves spaces alone)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~" else c for c in text)
