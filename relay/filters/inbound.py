"""Inbound filters from a project's ``filterSettings`` (and the global generic filters).

``compile_filters`` turns the JSON settings into a ``CompiledFilters`` once per project config
revision; ``CompiledFilters.should_filter`` then returns the outcome reason (Relay's
``FilterStatKey``) of the first filter that drops an event, or None.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from relay.filters.condition import Condition, compile_condition
from relay.filters.event import EventView
from relay.filters.glob import Patterns
from relay.filters.origins import SchemeDomainPort, compile_origins, matches_any_origin
from relay.filters.useragent import ParsedUserAgent, parse_user_agent

__all__ = [
    "MAX_GENERIC_FILTERS_VERSION",
    "CompiledFilters",
    "FilterStatKey",
    "compile_filters",
]

MAX_GENERIC_FILTERS_VERSION: Final = 1


class FilterStatKey:
    """Outcome reasons of the built-in filters (generic filters use their own id)."""

    # Final: class constants (mypyc compiles plain class assignments as instance fields).
    IP_ADDRESS: Final = "ip-address"
    RELEASE_VERSION: Final = "release-version"
    ERROR_MESSAGE: Final = "error-message"
    BROWSER_EXTENSIONS: Final = "browser-extensions"
    LEGACY_BROWSERS: Final = "legacy-browsers"
    LOCALHOST: Final = "localhost"
    WEB_CRAWLERS: Final = "web-crawlers"
    INVALID_CSP: Final = "invalid-csp"
    FILTERED_TRANSACTION: Final = "filtered-transaction"


# --- browser extensions ---------------------------------------------------------------------


def _lowercase_regex(alternatives: list[str]) -> re.Pattern[str]:
    """Compile a case-insensitive alternation to be searched in a lower-cased haystack.

    Python's IGNORECASE makes long alternations ~10x slower; lower-casing the haystack once
    and the (escape-safe: only ``\\s``, ``\\d`` and punctuation escapes) pattern is equivalent.
    """
    return re.compile("|".join(alternatives).lower())


_EXTENSION_VALUES: Final = _lowercase_regex(
    [
        r"top\.GLOBALS",
        r"originalCreateNotification",
        r"canvas.contentDocument",
        r"MyApp_RemoveAllHighlights",
        r"http://tt\.epicplay\.com",
        r"Can't\sfind\svariable:\sZiteReader",
        r"jigsaw\sis\snot\sdefined",
        r"ComboSearch\sis\snot\sdefined",
        r"http://loading\.retry\.widdit\.com/",
        r"atomicFindClose",
        r"fb_xd_fragment",  # Facebook
        r"bmi_SafeAddOnload",  # ISP "optimizing" proxies
        r"EBCallBackMessageReceived",
        r"_gCrWeb",  # Chrome on iOS
        r"conduitPage",
        r"null\sis\snot\san\sobject\s\(evaluating\s'elt.parentNode'\)",  # Google Search app
        r"plugin\.setSuspendState\sis\snot\sa\sfunction",  # Dragon web extension
        r"Extension\scontext\sinvalidated",
        r"webkit-masked-url:",
        r"can't\saccess\sdead\sobject",  # Firefox, extension touched a removed node
        r"Cannot\sredefine\sproperty:\s(?:solana|ethereum|googletag)",  # wallets, adblockers
        r"undefined\sis\snot\san\sobject\s\(evaluating\s'a\..'\)",  # iOS Chrome translation
        r"Permission\sdenied\sto\saccess\sproperty\s",
        r"Can't\sfind\svariable:\sgmo",  # Google Search app
    ]
)

_EXTENSION_SOURCES: Final = _lowercase_regex(
    [
        r"graph\.facebook\.com",
        r"connect\.facebook\.net",
        r"eatdifferent\.com\.woopra-ns\.com",
        r"static\.woopra\.com/js/woopra\.js",
        r"^chrome(?:-extension)?://",
        r"^moz-extension://",
        r"^safari(?:-web)?-extension://",
        r"webkit-masked-url",
        r"127\.0\.0\.1:4001/isrunning",  # Cacaoweb
        r"webappstoolbarba\.texthelp\.com/",
        r"metrics\.itunes\.apple\.com\.edgesuite\.net/",
        r"kaspersky-labs\.com",
    ]
)

# Frames without a real source (V8 internals) say nothing about where an error came from.
_ANONYMOUS_FRAMES: Final = frozenset({"<anonymous>", "[native code]"})


def _first_exception_source(exc: Mapping[str, Any]) -> str | None:
    stacktrace = exc.get("stacktrace")
    frames = stacktrace.get("frames") if isinstance(stacktrace, Mapping) else None
    if not isinstance(frames, list):
        return None
    for frame in reversed(frames):
        if not isinstance(frame, Mapping):
            return None
        path = frame.get("abs_path")
        if path is None:
            # Normalization moves a lone `filename` into `abs_path`.
            path = frame.get("filename")
        if not isinstance(path, str):
            return None
        if path not in _ANONYMOUS_FRAMES:
            return path
    return None


def _is_browser_extension(view: EventView) -> bool:
    exceptions = view.exceptions()
    if not exceptions:
        return False
    first = exceptions[0]
    if first is None:
        return False
    value = first.get("value")
    if isinstance(value, str) and _EXTENSION_VALUES.search(value.lower()):
        return True
    source = _first_exception_source(first)
    return source is not None and _EXTENSION_SOURCES.search(source.lower()) is not None


# --- web crawlers -----------------------------------------------------------------------------

_WEB_CRAWLERS: Final = _lowercase_regex(
    [
        r"Mediapartners-Google",
        r"AdsBot-Google",
        r"Googlebot",
        r"FeedFetcher-Google",
        r"Storebot-Google",
        r"BingBot",
        r"BingPreview",
        r"Baiduspider",
        r"Slurp",  # Yahoo
        r"Sogou",
        r"facebook",
        r"meta-",
        r"ia_archiver",  # Alexa
        r"bots?(?:[/\s\);]|$)",
        r"spider(?:[/\s\);]|$)",
        r"Slack",
        r"Calypso\sAppCrawler",
        r"pingdom",
        r"lyticsbot",
        r"AWS\sSecurity\sScanner",
        r"HubSpot\sCrawler",
        r"Bytespider",
        r"Better\sUptime",
        r"Cloudflare-Healthchecks",
        r"GTmetrix",
        r"BrightEdgeOnCrawl",
        r"ELB-HealthChecker",
        r"naver.me/spd",
        r"ClaudeBot",
        r"CCBot",
        r"OAI-SearchBot",
        r"GPTBot",
        r"PerplexityBot",
        r"Applebot",
        r"DuckDuckBot",
        r"Lightpanda",
    ]
)
# Bots that act for a user (link previews, Sentry's own uptime checks) are kept.
_ALLOWED_CRAWLERS: Final = _lowercase_regex(
    [r"Slackbot\s1\.\d+", r"SentryUptimeBot", r"ChatGPT-User"]
)


def is_web_crawler(user_agent: str) -> bool:
    """Whether a user agent belongs to a known crawler that is not on the allow list."""
    lowered = user_agent.lower()
    return _WEB_CRAWLERS.search(lowered) is not None and _ALLOWED_CRAWLERS.search(lowered) is None


# --- legacy browsers --------------------------------------------------------------------------

# Minimum supported major version per browser family for the "default" option.
_DEFAULT_MIN_VERSIONS: Final = {
    "Chrome": 0,
    "IE": 10,
    "Firefox": 0,
    "Safari": 6,
    "Edge": 0,
    "Opera": 15,
    "Android": 4,
    "Opera Mini": 8,
}

# option -> (family, predicate on the major version)
_LEGACY_OPTIONS: Final[dict[str, tuple[str, Callable[[int], bool]]]] = {
    "ie_pre_9": ("IE", lambda v: v <= 8),
    "ie9": ("IE", lambda v: v == 9),
    "ie10": ("IE", lambda v: v == 10),
    "ie11": ("IE", lambda v: v == 11),
    "opera_mini_pre_8": ("Opera Mini", lambda v: v < 8),
    "opera_pre_15": ("Opera", lambda v: v < 15),
    "android_pre_4": ("Android", lambda v: v < 4),
    "safari_pre_6": ("Safari", lambda v: v < 6),
    "edge_pre_79": ("Edge", lambda v: v < 79),
    "ie": ("IE", lambda v: v < 12),
    "opera_mini": ("Opera Mini", lambda v: v < 35),
    "opera": ("Opera", lambda v: v < 100),
    "android": ("Android", lambda v: v < 4),
    "safari": ("Safari", lambda v: v < 16),
    "edge": ("Edge", lambda v: v < 111),
    "chrome": ("Chrome", lambda v: v < 111),
    "firefox": ("Firefox", lambda v: v < 111),
}


def _major(ua: ParsedUserAgent) -> int | None:
    if ua.major is None:
        return None
    try:
        return int(ua.major)
    except ValueError:
        return None


def is_legacy_browser(ua: ParsedUserAgent, options: frozenset[str]) -> bool:
    """Whether a parsed browser is filtered by the given ``legacyBrowsers`` options."""
    # Sentry treats IE Mobile like IE.
    family = "IE" if ua.family == "IE Mobile" else ua.family
    major = _major(ua)
    if major is None:
        return False
    if "default" in options:
        minimum = _DEFAULT_MIN_VERSIONS.get(family)
        return minimum is not None and major < minimum
    for option in options:
        rule = _LEGACY_OPTIONS.get(option)  # unknown options never filter
        if rule is not None and rule[0] == family and rule[1](major):
            return True
    return False


# --- localhost --------------------------------------------------------------------------------

_LOCAL_IPS: Final = frozenset({"127.0.0.1", "::1"})
_LOCAL_DOMAINS: Final = ("127.0.0.1", "localhost")
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _url_is_local(url: str) -> bool:
    if _URL_SCHEME.match(url) is None:
        return False  # not an absolute URL: Relay cannot parse it and skips the check
    lowered = url.lower()
    # Cheap pre-check: a local URL names a local host or uses `file:` (urlsplit costs ~3 µs).
    if "localhost" not in lowered and "127.0.0.1" not in lowered and "file:" not in lowered:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() == "file":
        return True
    try:
        host = parts.hostname
    except ValueError:
        return False
    if not host:
        return False
    return any(host == domain or host.endswith("." + domain) for domain in _LOCAL_DOMAINS)


def _is_localhost(view: EventView) -> bool:
    if view.ip_addr() in _LOCAL_IPS:
        return True
    url = view.url()
    if url is not None and _url_is_local(url):
        return True
    for name in ("Host", "X-Forwarded-Host"):
        value = view.header(name)
        # Values look like "localhost:3000" or "127.0.0.1:8080".
        if value is not None and value.split(":", 1)[0] in _LOCAL_DOMAINS:
            return True
    return False


# --- error messages ---------------------------------------------------------------------------


def _matches_error_message(view: EventView, patterns: Patterns) -> bool:
    logentry = view.logentry()
    if logentry is not None:
        formatted = logentry.get("formatted")
        if isinstance(formatted, str):
            if patterns.is_match(formatted):
                return True
        else:
            message = logentry.get("message")
            if isinstance(message, str) and patterns.is_match(message):
                return True
    for exc in view.exceptions():
        if exc is None:
            continue
        ty = exc.get("type")
        value = exc.get("value")
        ty = ty if isinstance(ty, str) else ""
        value = value if isinstance(value, str) else ""
        message = f"{ty}: {value}" if ty and value else ty or value
        if patterns.is_match(message):
            return True
    return False


# --- client ips -------------------------------------------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_networks(entries: Any) -> tuple[_Network, ...]:
    networks: list[_Network] = []
    if isinstance(entries, list):
        for entry in entries:
            if not isinstance(entry, str):
                continue
            try:
                # Host bits may be set ("10.0.0.5/30"), as Relay's parser allows.
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                continue
    return tuple(networks)


# --- generic filters --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenericFilter:
    """One merged generic filter: its id (the outcome reason) and compiled condition."""

    id: str
    is_enabled: bool
    condition: Condition | None


def _generic_entries(config: Any) -> tuple[int, dict[str, dict[str, Any]]]:
    """(version, filters by id in first-seen order) of a generic filters config."""
    if not isinstance(config, Mapping):
        return 0, {}
    version = config.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        version = 0
    entries: dict[str, dict[str, Any]] = {}
    raw = config.get("filters")
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, Mapping):
                continue
            fid = item.get("id")
            if isinstance(fid, str) and fid not in entries:  # first one with an id wins
                entries[fid] = dict(item)
    return version, entries


def _merge_generic(project: Any, global_filters: Any) -> tuple[bool, tuple[GenericFilter, ...]]:
    """Project filters first (a missing condition is taken from the global filter with the same
    id), then global filters the project does not mention. Returns (supported, filters)."""
    p_version, p_filters = _generic_entries(project)
    g_version, g_filters = _generic_entries(global_filters)
    supported = p_version <= MAX_GENERIC_FILTERS_VERSION and (
        global_filters is None or g_version <= MAX_GENERIC_FILTERS_VERSION
    )
    if not supported:
        return False, ()
    merged: list[GenericFilter] = []
    for fid, item in p_filters.items():
        condition = item.get("condition")
        if condition is None and fid in g_filters:
            condition = g_filters[fid].get("condition")
        merged.append(_generic_filter(fid, item.get("isEnabled"), condition))
    for fid, item in g_filters.items():
        if fid not in p_filters:
            merged.append(_generic_filter(fid, item.get("isEnabled"), item.get("condition")))
    return True, tuple(merged)


def _generic_filter(fid: str, enabled: Any, condition: Any) -> GenericFilter:
    return GenericFilter(
        id=fid,
        is_enabled=enabled is True,
        condition=compile_condition(condition) if condition is not None else None,
    )


# --- the compiled set -------------------------------------------------------------------------


def _section(settings: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = settings.get(key)
    return value if isinstance(value, Mapping) else {}


def _enabled(settings: Mapping[str, Any], key: str) -> bool:
    return _section(settings, key).get("isEnabled") is True


def _string_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class CompiledFilters:
    """All inbound filters of one project config revision, ready to apply to events."""

    __slots__ = (
        "_active",
        "browser_extensions",
        "client_ips",
        "csp_sources",
        "error_messages",
        "generic",
        "generic_supported",
        "ignore_transactions",
        "legacy_browsers",
        "localhost",
        "releases",
        "web_crawlers",
    )

    def __init__(
        self, filter_settings: Mapping[str, Any] | None, global_filters: Any = None
    ) -> None:
        settings: Mapping[str, Any] = (
            filter_settings if isinstance(filter_settings, Mapping) else {}
        )
        self.browser_extensions = _enabled(settings, "browserExtensions")
        self.localhost = _enabled(settings, "localhost")
        self.web_crawlers = _enabled(settings, "webCrawlers")
        self.client_ips = _parse_networks(_section(settings, "clientIps").get("blacklistedIps"))
        self.csp_sources: list[SchemeDomainPort] = compile_origins(
            _string_list(_section(settings, "csp").get("disallowedSources"))
        )
        self.error_messages = Patterns(
            _string_list(_section(settings, "errorMessages").get("patterns"))
        )
        self.releases = Patterns(_string_list(_section(settings, "releases").get("releases")))
        ignore = _section(settings, "ignoreTransactions")
        patterns = Patterns(_string_list(ignore.get("patterns")))
        self.ignore_transactions: Patterns | None = (
            patterns if patterns and ignore.get("isEnabled") is True else None
        )
        legacy = _section(settings, "legacyBrowsers")
        options = frozenset(_string_list(legacy.get("options")))
        self.legacy_browsers: frozenset[str] | None = (
            options if legacy.get("isEnabled") is True and options else None
        )
        self.generic_supported, generic = _merge_generic(settings.get("generic"), global_filters)
        # Disabled filters or filters without a condition can never drop anything.
        self.generic = tuple(f for f in generic if f.is_enabled and f.condition is not None)
        self._active = bool(
            self.browser_extensions
            or self.localhost
            or self.web_crawlers
            or self.client_ips
            or self.csp_sources
            or self.error_messages
            or self.releases
            or self.ignore_transactions is not None
            or self.legacy_browsers is not None
            or self.generic
        )

    @property
    def is_empty(self) -> bool:
        """True if no filter can ever drop an event (callers may skip the call)."""
        return not self._active

    def should_filter(
        self,
        event: Mapping[str, Any],
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> str | None:
        """The outcome reason of the first filter that drops ``event``, else None.

        ``client_ip`` is the address of the client that sent the envelope (the ``clientIps``
        filter and ``envelope.client_ip`` in generic filters); the user IP inside the event is
        what the localhost filter checks. ``user_agent`` (the HTTP request's) is not used for
        events: like Relay, the browser filters read the event's ``User-Agent`` request header.
        """
        if not self._active:
            return None
        view = EventView(event, client_ip)

        # Generic filters run first; the order of the others is Relay's.
        for generic in self.generic:
            assert generic.condition is not None
            if generic.condition(view):
                return generic.id

        if self.csp_sources:
            csp = view.csp()
            if csp is not None and any(
                matches_any_origin(_opt_str(csp.get(field)), self.csp_sources)
                for field in ("blocked_uri", "source_file", "document_uri")
            ):
                return FilterStatKey.INVALID_CSP

        if self.client_ips and client_ip is not None:
            try:
                ip = ipaddress.ip_address(client_ip)
            except ValueError:
                ip = None
            if ip is not None and any(ip in net for net in self.client_ips):
                return FilterStatKey.IP_ADDRESS

        if self.releases:
            release = view.release()
            if release is not None and self.releases.is_match(release):
                return FilterStatKey.RELEASE_VERSION

        if self.error_messages and _matches_error_message(view, self.error_messages):
            return FilterStatKey.ERROR_MESSAGE

        if self.localhost and _is_localhost(view):
            return FilterStatKey.LOCALHOST

        if self.browser_extensions and _is_browser_extension(view):
            return FilterStatKey.BROWSER_EXTENSIONS

        if self.legacy_browsers is not None:
            ua = view.user_agent()
            if ua is not None and is_legacy_browser(parse_user_agent(ua), self.legacy_browsers):
                return FilterStatKey.LEGACY_BROWSERS

        if self.web_crawlers:
            ua = view.user_agent()
            if ua is not None and is_web_crawler(ua):
                return FilterStatKey.WEB_CRAWLERS

        if self.ignore_transactions is not None:
            name = view.transaction()
            if name is not None and self.ignore_transactions.is_match(name):
                return FilterStatKey.FILTERED_TRANSACTION

        return None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def compile_filters(
    filter_settings: Mapping[str, Any] | None, global_filters: Mapping[str, Any] | None = None
) -> CompiledFilters:
    """Compile a project's ``filterSettings`` once per config revision.

    ``global_filters`` is the global config's ``filters`` object (``{"version", "filters"}``);
    a whole global config (with such an object under ``filters``) is accepted too.
    """
    if isinstance(global_filters, Mapping) and isinstance(global_filters.get("filters"), Mapping):
        global_filters = global_filters["filters"]
    return CompiledFilters(filter_settings, global_filters)
