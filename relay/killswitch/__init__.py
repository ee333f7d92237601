"""Kill-switches: ``DROP DATA WHERE ...`` rules, named, stored in Redis, applied at admission."""

from relay.killswitch.evaluate import KillSwitches, Scope
from relay.killswitch.rules import FIELDS, Rule, RuleSyntaxError, parse_rule
from relay.killswitch.store import DEFAULT_REDIS_KEY, decode_hash, load_texts

__all__ = [
    "DEFAULT_REDIS_KEY",
    "FIELDS",
    "KillSwitches",
    "Rule",
    "RuleSyntaxError",
    "Scope",
    "decode_hash",
    "load_texts",
    "parse_rule",
]
