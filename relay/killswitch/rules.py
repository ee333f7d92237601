"""The kill-switch rule language: ``DROP DATA WHERE <condition>``.

Grammar (keywords are case-insensitive)::

    rule       := "DROP" "DATA" "WHERE" or_expr EOF
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | primary
    primary    := "(" or_expr ")" | FIELD ("=" | "!=") VALUE
                | FIELD ["NOT"] "IN" "(" VALUE ("," VALUE)* ")"
    VALUE      := integer | "double quoted" | 'single quoted'

Fields: ``project_id``, ``org_id`` and ``key_id`` compare with integers; ``event_type``,
``item_type``, ``platform``, ``sdk_name``, ``release`` and ``environment`` with strings.
A field the data does not have (an envelope without a release, a session's event type)
is *missing*: ``=`` and ``IN`` are false for it, ``!=`` and ``NOT IN`` true.

A broken rule raises :class:`RuleSyntaxError`, whose message names the 1-based line and column and
shows the line with a caret under the offending token. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

#: Fields a rule can test, and the type of their values.
INT_FIELDS: Final = frozenset({"project_id", "org_id", "key_id"})
STR_FIELDS: Final = frozenset(
    {"event_type", "item_type", "platform", "sdk_name", "release", "environment"}
)
FIELDS: Final = INT_FIELDS | STR_FIELDS

Value = int | str
#: Gives the value of a field for the data at hand (``None``: missing). Called lazily.
Lookup = Callable[[str], Value | None]


class RuleSyntaxError(ValueError):
    """A rule that does not parse, at ``line`` and ``column`` (both 1-based)."""

    def __init__(self, rule: str, offset: int, message: str) -> None:
        self.rule = rule
        self.offset = offset
        self.message = message
        start = rule.rfind("\n", 0, offset) + 1
        end = rule.find("\n", offset)
        text = rule[start : end if end >= 0 else len(rule)]
        self.line = rule.count("\n", 0, offset) + 1
        self.column = offset - start + 1
        where = (
            f"line {self.line}, column {self.column}" if "\n" in rule else f"column {self.column}"
        )
        pointer = " " * (self.column - 1) + "^"
        super().__init__(f"{where}: {message}\n  {text}\n  {pointer}")


# --- tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "int", "str", "op", "eof"
    text: str
    pos: int  # 0-based offset into the rule
    value: Value | None = None


_KEYWORDS = frozenset({"DROP", "DATA", "WHERE", "AND", "OR", "NOT", "IN"})


def _tokenize(rule: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(rule)
    while i < n:
        ch = rule[i]
        if ch.isspace():
            i += 1
        elif ch in "(),=":
            tokens.append(_Token("op", ch, i))
            i += 1
        elif ch == "!":
            if rule.startswith("!=", i):
                tokens.append(_Token("op", "!=", i))
                i += 2
            else:
                raise RuleSyntaxError(rule, i, "expected '!=' after '!'")
        elif ch in "\"'":
            end = i + 1
            chars: list[str] = []
            while end < n and rule[end] != ch:
                if rule[end] == "\\" and end + 1 < n:
                    end += 1
                chars.append(rule[end])
                end += 1
            if end >= n:
                raise RuleSyntaxError(rule, i, "unterminated string")
            tokens.append(_Token("str", rule[i : end + 1], i, "".join(chars)))
            i = end + 1
        elif ch.isdigit() or (ch == "-" and i + 1 < n and rule[i + 1].isdigit()):
            end = i + 1
            while end < n and rule[end].isdigit():
                end += 1
            if end < n and (rule[end].isalpha() or rule[end] == "_"):
                raise RuleSyntaxError(rule, i, "invalid number")
            tokens.append(_Token("int", rule[i:end], i, int(rule[i:end])))
            i = end
        elif ch.isalpha() or ch == "_":
            end = i + 1
            while end < n and (rule[end].isalnum() or rule[end] == "_"):
                end += 1
            tokens.append(_Token("word", rule[i:end], i))
            i = end
        else:
            raise RuleSyntaxError(rule, i, f"unexpected character {ch!r}")
    tokens.append(_Token("eof", "", n))
    return tokens


# --- syntax tree --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    negated: bool  # "!=" / "NOT IN"
    values: frozenset[Value]

    def matches(self, lookup: Lookup) -> bool:
        found = lookup(self.field) in self.values
        return not found if self.negated else found


@dataclass(frozen=True, slots=True)
class Not:
    inner: Expr

    def matches(self, lookup: Lookup) -> bool:
        return not self.inner.matches(lookup)


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]

    def matches(self, lookup: Lookup) -> bool:
        return all(p.matches(lookup) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]

    def matches(self, lookup: Lookup) -> bool:
        return any(p.matches(lookup) for p in self.parts)


Expr = Compare | Not | And | Or


def _fields_of(expr: Expr) -> frozenset[str]:
    if isinstance(expr, Compare):
        return frozenset({expr.field})
    if isinstance(expr, Not):
        return _fields_of(expr.inner)
    out: frozenset[str] = frozenset()
    for part in expr.parts:
        out |= _fields_of(part)
    return out


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule. ``fields``: the fields it reads (to skip costly lookups)."""

    text: str
    condition: Expr
    fields: frozenset[str]

    def matches(self, values: Lookup | Mapping[str, Value | None]) -> bool:
        """Whether data with these field values is to be dropped."""
        lookup = values.get if isinstance(values, Mapping) else values
        return self.condition.matches(lookup)


# --- parser -------------------------------------------------------------------------


class _Parser:
    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.tokens = _tokenize(rule)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, message: str, tok: _Token | None = None) -> RuleSyntaxError:
        tok = tok or self.tok
        found = "end of rule" if tok.kind == "eof" else repr(tok.text)
        return RuleSyntaxError(self.rule, tok.pos, f"{message}, found {found}")

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.upper() == word

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            raise self.fail(f"expected {word}")
        self.i += 1

    def is_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == op

    def expect_op(self, op: str) -> None:
        if not self.is_op(op):
            raise self.fail(f"expected '{op}'")
        self.i += 1

    def parse(self) -> Rule:
        for word in ("DROP", "DATA", "WHERE"):
            self.expect_kw(word)
        condition = self.or_expr()
        if self.tok.kind != "eof":
            raise self.fail("expected AND, OR or end of rule")
        return Rule(self.rule, condition, _fields_of(condition))

    def or_expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.is_kw("OR"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.not_expr()]
        while self.is_kw("AND"):
            self.i += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def not_expr(self) -> Expr:
        if self.is_kw("NOT"):
            self.i += 1
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Expr:
        if self.is_op("("):
            self.i += 1
            inner = self.or_expr()
            self.expect_op(")")
            return inner
        tok = self.tok
        if tok.kind != "word" or tok.text.upper() in _KEYWORDS:
            raise self.fail("expected a field or '('")
        name = tok.text.lower()
        if name not in FIELDS:
            known = ", ".join(sorted(FIELDS))
            raise self.fail(f"unknown field (known: {known})")
        self.i += 1
        if self.is_op("=") or self.is_op("!="):
            negated = self.tok.text == "!="
            self.i += 1
            return Compare(name, negated, frozenset({self.value(name)}))
        negated = False
        if self.is_kw("NOT"):
            negated = True
            self.i += 1
        if not self.is_kw("IN"):
            raise self.fail("expected IN" if negated else "expected '=', '!=' or IN")
        self.i += 1
        self.expect_op("(")
        values = {self.value(name)}
        while self.is_op(","):
            self.i += 1
            values.add(self.value(name))
        self.expect_op(")")
        return Compare(name, negated, frozenset(values))

    def value(self, field: str) -> Value:
        tok = self.tok
        if field in INT_FIELDS:
            if tok.kind != "int":
                raise self.fail(f"{field} compares with an integer")
        elif tok.kind != "str":
            raise self.fail(f"{field} compares with a quoted string")
        self.i += 1
        assert tok.value is not None
        return tok.value


def parse_rule(rule: str) -> Rule:
    """Parse ``DROP DATA WHERE ...``; raise :class:`RuleSyntaxError` pointing at the error."""
    return _Parser(rule.strip()).parse()
