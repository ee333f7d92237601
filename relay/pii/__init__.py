"""PII scrubbing compatible with Sentry Relay (piiConfig, datascrubbingSettings, `_meta`).

Pure library: no I/O. The server compiles a config once per project-config revision
(`compile_config` / `compile_project_configs`) and calls `PiiProcessor.process_event`
on each event; `pii_strip_event`, `convert_datascrubbing_config` and
`validate_pii_config` mirror the `sentry_relay` functions of the same name.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Final

import msgspec

from relay.pii.attachments import AttachmentScrubber, has_simple_attachment_selector
from relay.pii.compiled import compile_applications, compiled_patterns
from relay.pii.config import PiiConfig, PiiConfigError, parse_pii_config, parse_rule
from relay.pii.convert import convert_datascrubbing_config, datascrubbing_applications
from relay.pii.eap import OURLOG, SPAN_V2, scrub_item
from relay.pii.json_scrub import JsonScrubError, scrub_json
from relay.pii.minidumps import MinidumpScrubber
from relay.pii.processor import PiiProcessor
from relay.pii.selector import InvalidSelectorError

__all__ = [
    "AttachmentScrubber",
    "InvalidSelectorError",
    "JsonScrubError",
    "MinidumpScrubber",
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
    """Everything Relay runs on one project's events: piiConfig first, then datascrubbing.

    Plain attachments get the piiConfig alone, and only when it has an application whose
    selector starts with `$attachments.<name>` (as Relay's server decides). JSON
    attachments (view hierarchies) and minidumps get the piiConfig alone too, whenever
    there is one.
    """

    def __init__(
        self,
        processors: list[PiiProcessor],
        attachments: AttachmentScrubber | None = None,
        documents: PiiProcessor | None = None,
        legacy: PiiProcessor | None = None,
        minidumps: MinidumpScrubber | None = None,
    ) -> None:
        self.processors = [p for p in processors if not p.is_empty]
        self.attachments = attachments
        #: The piiConfig for minidumps; None when there is none (or it has no rules).
        self.minidumps = minidumps
        #: The piiConfig for JSON attachments; None when the project has no piiConfig.
        self.documents = documents
        #: The datascrubbingSettings rules; None when they scrub nothing.
        self.legacy = legacy if legacy is not None and not legacy.is_empty else None
        advanced = documents if documents is not None and not documents.is_empty else None
        #: The piiConfig rules, when there are any (EAP items get both, each its way).
        self.advanced = advanced

    @property
    def is_empty(self) -> bool:
        """True when this project scrubs nothing."""
        return not self.processors

    def process_event(self, event: dict[str, Any]) -> None:
        """Scrub an event/transaction payload dict in place."""
        for processor in self.processors:
            processor.process_event(event)

    def process_log(self, log: dict[str, Any]) -> None:
        """Scrub a log (an entry of a log container) in place, as Relay scrubs `OurLog`."""
        scrub_item(log, OURLOG, self.advanced, self.legacy)

    def process_span(self, span: dict[str, Any]) -> None:
        """Scrub a V2 span (span containers, converted V1 spans) in place."""
        scrub_item(span, SPAN_V2, self.advanced, self.legacy)

    def process_attachment(self, filename: str, payload: bytes) -> bytes:
        """Scrub a plain attachment's bytes; returns `payload` itself when nothing changed.

        The length never changes. Not for minidumps or attachment placeholders, nor for
        view hierarchies when they are scrubbed as JSON (`process_json_attachment`).
        """
        if self.attachments is None:
            return payload
        scrubbed, changed = self.attachments.scrub(filename, payload)
        return scrubbed if changed else payload

    def process_minidump(self, filename: str, payload: bytes) -> bytes:
        """Scrub a minidump's bytes as Relay does; returns `payload` itself when unchanged.

        The length never changes. A dump that cannot be read is scrubbed as a plain
        attachment (by the piiConfig's `$attachments` rules, whatever their selectors).
        """
        if self.minidumps is None:
            return payload
        scrubbed, changed = self.minidumps.scrub(filename, payload)
        return scrubbed if changed else payload

    def process_json_attachment(self, payload: bytes) -> bytes:
        """Scrub a JSON attachment (a view hierarchy) as Relay does with the piiConfig.

        The result is the compact re-serialization of the document, so it may differ
        from `payload` (and in length) even when no rule matched. Returns `payload`
        itself when the project has no piiConfig or the payload is not JSON that Relay
        reads (Relay keeps such attachments unchanged).
        """
        if self.documents is None:
            return payload
        try:
            scrubbed = scrub_json(self.documents, payload)
        except JsonScrubError:
            return payload
        return payload if scrubbed == payload else scrubbed

    def clear_value_cache(self) -> None:
        """Drop the cross-event string cache (to measure or bound the cold path)."""
        for processor in self.processors:
            processor.clear_value_cache()


def compile_project_configs(
    pii_config: dict[str, Any] | None, datascrubbing_settings: dict[str, Any] | None
) -> ScrubbingPipeline:
    """Build the per-revision scrubber from a project config's two PII sections."""
    processors: list[PiiProcessor] = []
    attachments: AttachmentScrubber | None = None
    documents: PiiProcessor | None = None
    legacy: PiiProcessor | None = None
    minidumps: MinidumpScrubber | None = None
    if pii_config or isinstance(pii_config, dict | list):
        # Even an empty piiConfig counts for JSON attachments: Relay then still rewrites
        # them compactly.
        parsed = parse_pii_config(pii_config)
        documents = compile_config(parsed)
        processors.append(documents)
        if not documents.is_empty:
            binary = AttachmentScrubber(documents.applications)
            minidumps = MinidumpScrubber(binary)
            if has_simple_attachment_selector(parsed):
                attachments = binary
    if datascrubbing_settings:
        legacy = compile_datascrubbing(datascrubbing_settings)
        if legacy is not None:
            processors.append(legacy)
    return ScrubbingPipeline(processors, attachments, documents, legacy, minidumps)


def pii_strip_event(config: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Scrub a copy of `event` with a piiConfig; same result as `sentry_relay.pii_strip_event`.

    The event is expected in Relay's canonical shape (as Relay itself serializes events,
    e.g. after normalization); the input is not modified.
    """
    copy: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(event))
    _compiled_for(config).process_event(copy)
    return copy


_COMPILED: Final[OrderedDict[bytes, PiiProcessor]] = OrderedDict()
_COMPILED_MAX: Final = 32


def _compiled_for(config: dict[str, Any]) -> PiiProcessor:
    # Sentry calls this with few distinct configs: compile each once (bounded LRU).
    key = msgspec.json.encode(config)
    processor = _COMPILED.get(key)
    if processor is None:
        processor = compile_config(config)
        _COMPILED[key] = processor
        if len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    return processor


def validate_pii_config(config: str) -> None:
    """Raise ValueError (PiiConfigError) for configs `sentry_relay.validate_pii_config` rejects."""
    try:
        raw = json.loads(config)
    except json.JSONDecodeError as exc:
        raise PiiConfigError(str(exc)) from None
    parsed = parse_pii_config(raw)
    compiled_patterns(compile_applications(parsed))
