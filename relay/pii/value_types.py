"""Value types and PII levels, the vocabulary shared by selectors and the event schema.

Value types are bit flags so that a field can carry several (a log message is both
`$message` and `$string`). The declaration order is Relay's: it defines how selectors
sort, which in turn decides the order in which applications run.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# Declaration order matters (selector ordering); index = bit position.
VALUE_TYPE_NAMES: Final[tuple[str, ...]] = (
    "string",
    "binary",
    "number",
    "boolean",
    "datetime",
    "array",
    "object",
    "event",
    "attachments",
    "replay",
    "error",
    "stack",
    "frame",
    "http",
    "user",
    "logentry",
    "message",
    "thread",
    "breadcrumb",
    "log",
    "trace_metric",
    "span",
    "sdk",
    "minidump",
    "heap_memory",
    "stack_memory",
)

# Accepted spellings in selectors (`$request` and `$http` are the same type).
VALUE_TYPE_ALIASES: Final[dict[str, int]] = {name: i for i, name in enumerate(VALUE_TYPE_NAMES)}
VALUE_TYPE_ALIASES.update(
    {
        "bool": VALUE_TYPE_NAMES.index("boolean"),
        "list": VALUE_TYPE_NAMES.index("array"),
        "exception": VALUE_TYPE_NAMES.index("error"),
        "stacktrace": VALUE_TYPE_NAMES.index("stack"),
        "request": VALUE_TYPE_NAMES.index("http"),
    }
)


def vt(name: str) -> int:
    """Bit flag of a value type by canonical name."""
    return 1 << VALUE_TYPE_NAMES.index(name)


STRING: Final = vt("string")
NUMBER: Final = vt("number")
BOOLEAN: Final = vt("boolean")
DATETIME: Final = vt("datetime")
ARRAY: Final = vt("array")
OBJECT: Final = vt("object")

# Types that a `pii = "maybe"` field may be addressed by, but only as the first selector item.
SCHEMA_TYPES_MASK: Final = sum(
    1 << i
    for i, name in enumerate(VALUE_TYPE_NAMES)
    if name not in ("string", "binary", "number", "boolean", "datetime", "array", "object")
)


class Pii(IntEnum):
    """Whether a field may be scrubbed: always, only by specific selectors, or never."""

    FALSE = 0
    TRUE = 1
    MAYBE = 2


def json_value_type(value: object) -> int:
    """The value type of a plain JSON value, as Relay types its `Value`."""
    if isinstance(value, str):
        return STRING
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, dict):
        return OBJECT
    if isinstance(value, list):
        return ARRAY
    return 0
