"""Tier 1: the kill-switch rule language and its evaluation over envelopes."""

from __future__ import annotations

import json

import pytest

from relay.killswitch import KillSwitches, RuleSyntaxError, Scope, parse_rule
from relay.protocol.envelope import Envelope, Item

ISSUE_RULE = 'DROP DATA WHERE (project_id = 1) OR (project_id = 2 AND event_type = "transaction")'


def test_issue_example() -> None:
    rule = parse_rule(ISSUE_RULE)
    assert rule.matches({"project_id": 1})
    assert rule.matches({"project_id": 2, "event_type": "transaction"})
    assert not rule.matches({"project_id": 2, "event_type": "error"})
    assert not rule.matches({"project_id": 3, "event_type": "transaction"})
    assert rule.fields == {"project_id", "event_type"}


@pytest.mark.parametrize(
    ("rule", "values", "expected"),
    [
        ("DROP DATA WHERE project_id != 1", {"project_id": 2}, True),
        ("DROP DATA WHERE project_id != 1", {"project_id": 1}, False),
        ("DROP DATA WHERE project_id IN (1, 2, 3)", {"project_id": 3}, True),
        ("DROP DATA WHERE project_id NOT IN (1, 2)", {"project_id": 3}, True),
        ("DROP DATA WHERE NOT project_id IN (1, 2)", {"project_id": 1}, False),
        ("drop data where item_type = 'attachment'", {"item_type": "attachment"}, True),
        ("DROP DATA WHERE NOT NOT org_id = 5", {"org_id": 5}, True),
        # AND binds tighter than OR.
        ("DROP DATA WHERE key_id = 1 OR key_id = 2 AND org_id = 9", {"key_id": 1}, True),
        ("DROP DATA WHERE (key_id = 1 OR key_id = 2) AND org_id = 9", {"key_id": 1}, False),
        # Missing fields: = and IN are false, != true.
        ('DROP DATA WHERE release = "1.0"', {}, False),
        ('DROP DATA WHERE release != "1.0"', {}, True),
        ('DROP DATA WHERE environment IN ("prod")', {"environment": None}, False),
        (
            'DROP DATA WHERE sdk_name = "sentry.python" AND platform = "python"',
            {"sdk_name": "sentry.python", "platform": "python"},
            True,
        ),
        ('DROP DATA WHERE release = "a\\"b"', {"release": 'a"b'}, True),
    ],
)
def test_operators(rule: str, values: dict[str, int | str | None], expected: bool) -> None:
    assert parse_rule(rule).matches(values) is expected


@pytest.mark.parametrize(
    ("rule", "column", "fragment"),
    [
        ("DROP DATA project_id = 1", 11, "expected WHERE"),
        ("DROP DATA WHERE", 16, "expected a field"),
        ("DROP DATA WHERE foo = 1", 17, "unknown field"),
        ('DROP DATA WHERE project_id = "1"', 30, "integer"),
        ("DROP DATA WHERE release = 1", 27, "quoted string"),
        ("DROP DATA WHERE (project_id = 1", 32, "expected ')'"),
        ("DROP DATA WHERE project_id = 1 project_id = 2", 32, "expected AND, OR"),
        ("DROP DATA WHERE project_id == 1", 29, "compares with an integer"),
        ("DROP DATA WHERE project_id IN ()", 32, "integer"),
        ('DROP DATA WHERE release = "open', 27, "unterminated"),
        ("DROP DATA WHERE project_id ! 1", 28, "'!='"),
        ("DROP DATA WHERE project_id = 1 & 2", 32, "unexpected character"),
        ("DROP DATA WHERE project_id NOT = 1", 32, "expected IN"),
        ("DROP DATA WHERE project_id = 1x", 30, "invalid number"),
    ],
)
def test_errors_point_at_the_column(rule: str, column: int, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rule(rule)
    assert info.value.column == column, str(info.value)
    assert fragment in info.value.message
    # The message shows the rule with a caret under the offending character.
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"column {column}:")
    assert lines[2].index("^") - 2 == column - 1


def test_errors_in_multiline_rules_name_the_line() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rule("DROP DATA WHERE\n  project_id = 1\n  OR bogus = 2\n")
    assert (info.value.line, info.value.column) == (3, 6)
    assert str(info.value).startswith("line 3, column 6: unknown field")


def _envelope(*items: Item, **headers: object) -> Envelope:
    return Envelope(dict(headers), list(items))


def _event(**fields: object) -> Item:
    return Item.new("event", json.dumps(fields).encode())


def test_split_drops_matching_items_only() -> None:
    switches, errors = KillSwitches.from_texts(
        {"no-attachments": "DROP DATA WHERE item_type = 'attachment' AND project_id = 7"}
    )
    assert not errors
    event = _event(message="hi")
    attachment = Item.new("attachment", b"data", filename="a.txt")
    envelope = _envelope(event, attachment)
    dropped = switches.split(envelope, Scope(project_id=7))
    assert dropped == [(attachment, "no-attachments")]
    assert envelope.items == [event]
    # Another project: nothing dropped.
    other = _envelope(_event(), Item.new("attachment", b"x"))
    assert switches.split(other, Scope(project_id=8)) == []
    assert len(other.items) == 2


def test_event_fields_come_from_the_payload_and_headers() -> None:
    switches, _ = KillSwitches.from_texts({
        "errors": 'DROP DATA WHERE event_type = "error" AND release = "bad@1"',
        "tx": 'DROP DATA WHERE event_type = "transaction" AND environment = "staging"',
        "sdk": 'DROP DATA WHERE sdk_name = "sentry.javascript.browser" AND org_id = 3',
    })  # fmt: skip
    error = _event(exception={"values": [{"type": "E"}]}, release="bad@1")
    assert switches.match_item(_envelope(error), error, Scope()) == "errors"
    message = _event(release="bad@1")  # no exception: event_type "default"
    assert switches.match_item(_envelope(message), message, Scope()) is None
    # Attachments of a dropped event share its fields.
    attachment = Item.new("attachment", b"x")
    assert switches.match_item(_envelope(error, attachment), attachment, Scope()) == "errors"
    tx = Item.new("transaction", b'{"type": "transaction"}')
    env = _envelope(tx, trace={"environment": "staging", "trace_id": "0" * 32})
    assert switches.match_item(env, tx, Scope()) == "tx"
    session = Item.new("session", b"{}")
    by_client = _envelope(session)
    scope = Scope(org_id=3, client="sentry.javascript.browser/8.0.0")
    assert switches.match_item(by_client, session, scope) == "sdk"
    by_header = _envelope(session, sdk={"name": "sentry.javascript.browser"})
    assert switches.match_item(by_header, session, Scope(org_id=3)) == "sdk"
    assert switches.match_item(by_header, session, Scope(org_id=4)) is None


def test_broken_rules_are_reported_and_skipped() -> None:
    switches, errors = KillSwitches.from_texts(
        {"good": "DROP DATA WHERE project_id = 1", "bad": "DROP DATA WHERE"}
    )
    assert set(switches.rules) == {"good"}
    assert set(errors) == {"bad"}


def test_unchanged_rules_are_not_recompiled() -> None:
    first, _ = KillSwitches.from_texts({"a": "DROP DATA WHERE project_id = 1"})
    second, _ = KillSwitches.from_texts(
        {"a": "DROP DATA WHERE project_id = 1", "b": "DROP DATA WHERE org_id = 1"}, first
    )
    assert second.rules["a"] is first.rules["a"]
