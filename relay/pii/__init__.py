"""PII scrubbing compatible with Sentry Relay (piiConfig, datascrubbingSettings, `_meta`).

Pure library: no I/O. The server compiles a config once per project-config revision
(`compile_config` / `compile_project_configs`) and calls `PiiProcessor.process_event`
on each event; `pii_strip_event`, `convert_datascrubbing_config` and
`validate_pii_config` mirror the `sentry_relay` functions of the same name.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from relay.pii.compiled import compile_applications, compiled_patterns
from relay.pii.config import PiiConfig, PiiConfigError, parse_pii_config, parse_rule
from relay.pii.convert import convert_datascrubbing_config, datascrubbing_applications
from relay.pii.processor import PiiProcessor
from relay.pii.selector import InvalidSelectorError

__all__ = [
    "InvalidSelectorError",
    "PiiConfigError",
    "PiiProcessor",
    "ScrubbingPipeline",
    "compile_config",
    "compile_datascrubbing",
    "compile_project_configs",
    "convert_datascrubbing_config",
    "pii_strip_event",
    "validate_pii_config",
]


def compile_config(config: dict[str, Any] | PiiConfig) -> PiiProcessor:
    """Compile a piiConfig (decoded JSON) once; reuse the result for every event."""
    parsed = config if isinstance(config, PiiConfig) else parse_pii_config(config)
    return PiiProcessor(compile_applications(parsed))


def compile_datascrubbing(settings: dict[str, Any]) -> PiiProcessor | None:
    """Compile `datascrubbingSettings` directly (keeps Relay's case-insensitive field match)."""
    converted = datascrubbing_applications(settings)
    if converted is None:
        return None
    rules, applications = converted
    config = PiiConfig(applications=applications)
    for rule_id, raw in rules.items():
        spec = parse_rule(raw)
        # In-process conversion matches sensitive field names case-insensitively.
        spec.case_insensitive = True
        config.rules[rule_id] = spec
    return PiiProcessor(compile_applications(config))


class ScrubbingPipeline:
    """Everything Relay runs on one project's events: piiConfig first, then datascrubbing."""

    def __init__(self, processors: list[PiiProcessor]) -> None:
        self.processors = [p for p in processors if not p.is_empty]

    @property
    def is_empty(self) -> bool:
        """True when this project scrubs nothing."""
        return not self.processors

    def process_event(self, event: dict[str, Any]) -> None:
        """Scrub an event/transaction payload dict in place."""
        for processor in self.processors:
            processor.process_event(event)


def compile_project_configs(
    pii_config: dict[str, Any] | None, datascrubbing_settings: dict[str, Any] | None
) -> ScrubbingPipeline:
    """Build the per-revision scrubber from a project config's two PII sections."""
    processors: list[PiiProcessor] = []
    if pii_config:
        processors.append(compile_config(pii_config))
    if datascrubbing_settings:
        compiled = compile_datascrubbing(datascrubbing_settings)
        if compiled is not None:
            processors.append(compiled)
    return ScrubbingPipeline(processors)


def pii_strip_event(config: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Scrub a copy of `event` with a piiConfig; same result as `sentry_relay.pii_strip_event`.

    The event is expected in Relay's canonical shape (as Relay itself serializes events,
    e.g. after normalization); the input is not modified.
    """
    copy: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event))
    compile_config(config).process_event(copy)
    return copy


def validate_pii_config(config: str) -> None:
    """Raise ValueError (PiiConfigError) for configs `sentry_relay.validate_pii_config` rejects."""
    try:
        raw = json.loads(config)
    except json.JSONDecodeError as exc:
        raise PiiConfigError(str(exc)) from None
    parsed = parse_pii_config(raw)
    compiled_patterns(compile_applications(parsed))
