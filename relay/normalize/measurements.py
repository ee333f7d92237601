"""Transaction measurements: names, default units, derived rates and the configured limits.

Relay validates measurement names when it reads the event (``Measurements::from_value``),
then, in normalization, drops measurements from non-transactions, renames the dot-case app
start keys, defaults units, derives rates and, on a Relay with project and global config,
removes what that config does not allow (``remove_invalid_measurements``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from relay.normalize.chrono import RUST_WHITESPACE
from relay.normalize.meta import Meta, add_error, child, invalid, node
from relay.normalize.primitives import Converter, canonical_unit

_MS: Final = "millisecond"
_DEFAULT_UNITS: Final = {
    "fcp": _MS,
    "lcp": _MS,
    "fid": _MS,
    "fp": _MS,
    "inp": _MS,
    "ttfb": _MS,
    "ttfb.requesttime": _MS,
    "cls": "none",
    "app_start_cold": _MS,
    "app_start_warm": _MS,
    "frames_total": "none",
    "frames_slow": "none",
    "frames_slow_rate": "ratio",
    "frames_frozen": "none",
    "frames_frozen_rate": "ratio",
    "time_to_initial_display": _MS,
    "time_to_full_display": _MS,
    "stall_count": "none",
    "stall_total_time": _MS,
    "stall_longest_time": _MS,
    "stall_percentage": "ratio",
}
#: Old SDKs report app starts of more than 3 minutes; Relay drops them as outliers.
_MAX_DURATION_MOBILE_MS: Final = 180_000.0
_MOBILE_OUTLIERS: Final = (
    "app_start_cold",
    "app_start_warm",
    "time_to_initial_display",
    "time_to_full_display",
)
#: Length of a measurement's metric resource identifier besides its name and unit.
MEASUREMENT_MRI_OVERHEAD: Final = 29
#: Relay keeps ``_meta`` original values only below this JSON size.
_MAX_ORIGINAL_SIZE: Final = 500

_encode = msgspec.json.Encoder().encode


def is_valid_name(name: str) -> bool:
    """An ASCII letter, then ASCII letters, digits, ``_`` and ``.`` (names and breakdowns)."""
    return (
        name.isascii() and name[:1].isalpha() and name.replace("_", "a").replace(".", "a").isalnum()
    )


def named_map_converter(map_conv: Converter, what: str, *, lowercase: bool) -> Converter:
    """Wrap an object converter with Relay's name rules for measurements and breakdowns.

    Names are trimmed (and, for measurements, lowercased); invalid names are dropped with
    an error on the map. Keys are visited in sorted order (Relay's maps are sorted), so
    when two names come out alike the later one wins, as in Relay.
    """

    def conv(value: Any, meta: Meta, key: str) -> Any:
        if type(value) is not dict:
            return map_conv(value, meta, key)
        renamed: dict[str, Any] = {}
        errors: list[Any] = []
        for name in sorted(value):
            trimmed = name.strip(RUST_WHITESPACE)
            if is_valid_name(trimmed):
                renamed[trimmed.lower() if lowercase else trimmed] = value[name]
            elif lowercase and not trimmed:
                errors.append(invalid(f"{what} name '' cannot be empty"))
            else:
                errors.append(
                    invalid(f"{what} name '{trimmed}' can contain only characters a-z0-9._")
                )
        out = map_conv(renamed, meta, key)
        if errors:
            sub = child(meta, key)
            for error in errors:
                add_error(sub, error)
        return out

    return conv


@dataclass(frozen=True, slots=True)
class MeasurementsConfig:
    """Project and global measurement settings merged (Relay's ``CombinedMeasurementsConfig``).

    ``builtin`` maps a name to its unit and whether negative values are allowed; project
    entries come first. ``max_custom`` is the stricter of the two limits, if any.
    """

    builtin: dict[str, tuple[str, bool]]
    max_custom: int | None
    max_name_and_unit_len: int | None


def _builtin_keys(section: Any) -> list[tuple[str, str, bool]]:
    keys = []
    entries = section.get("builtinMeasurements") if type(section) is dict else None
    for entry in entries if type(entries) is list else ():
        if type(entry) is not dict:
            continue
        name, unit = entry.get("name"), entry.get("unit", "none")
        parsed = canonical_unit(unit) if type(unit) is str else None
        if type(name) is str and parsed is not None:
            keys.append((name, parsed, entry.get("allowNegative") is True))
    return keys


def _max_custom(section: Any) -> int | None:
    if type(section) is not dict:
        return None
    value = section.get("maxCustomMeasurements", 0)
    return value if type(value) is int and value >= 0 else 0


@functools.lru_cache(maxsize=256)
def _compile(sections: bytes, max_name_and_unit_len: int | None) -> MeasurementsConfig:
    project, global_ = msgspec.json.decode(sections)
    project_keys = _builtin_keys(project)
    builtin: dict[str, tuple[str, bool]] = {}
    for name, unit, negative in project_keys + [
        k for k in _builtin_keys(global_) if k not in project_keys
    ]:
        builtin.setdefault(name, (unit, negative))
    limits = [m for m in (_max_custom(project), _max_custom(global_)) if m is not None]
    return MeasurementsConfig(builtin, min(limits) if limits else None, max_name_and_unit_len)


def compile_config(
    project: Any, global_: Any, max_name_and_unit_len: int | None
) -> MeasurementsConfig:
    """The merged config of a project's and the global ``measurements`` sections (cached)."""
    return _compile(_encode((project, global_)), max_name_and_unit_len)


def _value(measurements: dict[str, Any], name: str) -> float | None:
    entry = measurements.get(name)
    if type(entry) is dict:
        return entry.get("value")
    return None


def normalize_measurements(
    event: dict[str, Any],
    meta: Meta,
    config: MeasurementsConfig | None,
    duration_ms: float | None,
) -> None:
    """Only transactions keep measurements; units default by name; rates are derived.

    ``duration_ms`` is the transaction's (positive) duration; with a ``config``,
    measurements it does not allow are removed.
    """
    if event.get("type") != "transaction":
        # Relay replaces the whole value, annotations included.
        event["measurements"] = None
        meta.pop("measurements", None)
        return
    measurements = event.get("measurements")
    if type(measurements) is not dict:
        return
    for dotted, snake in (
        ("app.start.cold", "app_start_cold"),
        ("app.start.warm", "app_start_warm"),
    ):
        if dotted in measurements:
            measurements[snake] = measurements.pop(dotted)
    for name in _MOBILE_OUTLIERS:
        value = _value(measurements, name)
        if value is not None and value > _MAX_DURATION_MOBILE_MS:
            del measurements[name]
    for name, entry in measurements.items():
        if type(entry) is dict and entry.get("unit") is None:
            entry["unit"] = _DEFAULT_UNITS.get(name, "none")
    _compute(measurements, duration_ms)
    if config is not None:
        _remove_invalid(measurements, meta, config)


def _compute(measurements: dict[str, Any], duration_ms: float | None) -> None:
    total = _value(measurements, "frames_total")
    if total is not None and total > 0:
        for part, rate in (
            ("frames_frozen", "frames_frozen_rate"),
            ("frames_slow", "frames_slow_rate"),
        ):
            value = _value(measurements, part)
            if value is not None:
                measurements[rate] = {"value": value / total, "unit": "ratio"}
    stall = measurements.get("stall_total_time")
    if (
        duration_ms is not None
        and duration_ms > 0
        and type(stall) is dict
        and stall.get("unit") in (None, _MS, "none")
        and stall.get("value") is not None
    ):
        measurements["stall_percentage"] = {"value": stall["value"] / duration_ms, "unit": "ratio"}


def _remove_invalid(measurements: dict[str, Any], meta: Meta, config: MeasurementsConfig) -> None:
    """Relay's ``remove_invalid_measurements``: bad names, wrong units, too many customs."""
    custom = 0
    max_custom = config.max_custom
    removed: dict[str, Any] = {}
    errors: list[Any] = []
    # Sorted, as Relay's map is: which customs fit the budget must not depend on order.
    for name in sorted(measurements):
        entry = measurements[name]
        if type(entry) is not dict:
            del measurements[name]
            continue
        unit = entry.get("unit") or "none"
        error = None
        if not name[:1].isascii() or not name[:1].isalpha():
            error = f'Metric name contains invalid characters: "{name}"'
        elif config.max_name_and_unit_len is not None:
            max_len = config.max_name_and_unit_len - len(unit)
            if len(name.encode()) > max_len:
                error = f'Metric name too long {len(name.encode())}/{max_len}: "{name}"'
        if error is None:
            builtin = config.builtin.get(name)
            if builtin is not None:
                value = entry.get("value") or 0.0
                if not builtin[1] and value < 0:
                    error = f"Negative value for measurement {name} not allowed: {_rust_f64(value)}"
                elif builtin[0] != unit:
                    # A builtin name with the wrong unit is not even a custom measurement.
                    del measurements[name]
                    continue
                else:
                    continue
            elif max_custom is None or custom < max_custom:
                custom += 1
                continue
            else:
                error = f"Too many measurements: {name}"
        errors.append(invalid(error))
        removed[name] = {"value": entry.get("value"), "unit": entry.get("unit")}
        del measurements[name]
    if errors:
        own = node(child(meta, "measurements"))
        own.setdefault("err", []).extend(errors)
        if len(_encode(removed)) < _MAX_ORIGINAL_SIZE:
            own["val"] = removed


def _rust_f64(value: float) -> str:
    """``f64``'s ``Display``: no trailing ``.0`` for whole numbers."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


#: Measurements an app start can be read from, with the start type each one implies.
_APP_START_SOURCES: Final = (
    ("app_start_cold", "cold"),
    ("app_start_warm", "warm"),
    ("app.vitals.start.value", None),
    ("app.vitals.start.cold.value", None),
    ("app.vitals.start.warm.value", None),
)
_APP_START_VALUE: Final = "app.vitals.start.value"
_APP_START_TYPE: Final = "app.vitals.start.type"
_APP_START_SCREEN: Final = "app.vitals.start.screen"


def backfill_app_vitals_start(event: dict[str, Any]) -> None:
    """Relay's app start backfill for transactions: the new ``app.vitals.start.*`` names.

    The app start screen goes into the ``ui.load`` trace context's data; a legacy
    ``app_start_cold``/``app_start_warm`` measurement in milliseconds is copied to
    ``app.vitals.start.value`` with an ``app.vitals.start.type`` tag.
    """
    measurements = event.get("measurements")
    if type(measurements) is not dict:
        return
    _backfill_screen(event, measurements)
    tags = event.get("tags")
    if type(tags) is list and any(pair is not None and pair[0] == _APP_START_TYPE for pair in tags):
        return
    if _APP_START_VALUE in measurements:
        return
    for name, start_type in _APP_START_SOURCES:
        entry = measurements.get(name)
        if start_type is None or type(entry) is not dict:
            continue
        value = entry.get("value")
        if entry.get("unit") != _MS or value is None:
            continue
        measurements[_APP_START_VALUE] = {"value": value, "unit": _MS}
        if type(tags) is not list:
            tags = event["tags"] = []
        tags.append([_APP_START_TYPE, start_type])
        return


def _backfill_screen(event: dict[str, Any], measurements: dict[str, Any]) -> None:
    screen = event.get("transaction")
    if not screen or screen == "<unlabeled transaction>":
        return
    if not any(name in measurements for name, _ in _APP_START_SOURCES):
        return
    contexts = event.get("contexts")
    trace = contexts.get("trace") if type(contexts) is dict else None
    if type(trace) is not dict or trace.get("op") != "ui.load":
        return
    data = trace.get("data")
    if type(data) is not dict:
        data = trace["data"] = {}
    data.setdefault(_APP_START_SCREEN, screen)
