"""Inbound filters: Relay's relay-filter test vectors, checked through ``compile_filters``."""

from __future__ import annotations

from typing import Any

import pytest

from relay.filters import FilterStatKey, compile_filters
from relay.filters.inbound import is_legacy_browser
from relay.filters.useragent import ParsedUserAgent, parse_user_agent

Event = dict[str, Any]


def check(settings: dict[str, Any], event: Event, client_ip: str | None = None) -> str | None:
    return compile_filters(settings).should_filter(event, client_ip=client_ip, user_agent=None)


# --- empty and disabled -------------------------------------------------------------------


def test_empty_settings_filter_nothing() -> None:
    for settings in (None, {}, {"browserExtensions": {"isEnabled": False}}):
        filters = compile_filters(settings)
        assert filters.is_empty
        assert filters.should_filter({"release": "1.0"}, client_ip="127.0.0.1") is None


def test_garbage_settings_are_ignored() -> None:
    settings: dict[str, Any] = {
        "errorMessages": "nope",
        "releases": {"releases": [1, None, "[b-a]"]},
        "clientIps": {"blacklistedIps": ["lol/bar", 3]},
        "legacyBrowsers": {"isEnabled": True},
        "generic": {"version": "x", "filters": "y"},
    }
    filters = compile_filters(settings)
    assert filters.should_filter({"release": "b"}, client_ip="1.2.3.4") is None


# --- browser extensions -------------------------------------------------------------------


def _exception_event(exc: dict[str, Any]) -> Event:
    return {"exception": {"values": [exc, {}, {}]}}


def _source_event(source: str) -> Event:
    frames = [{"abs_path": source}, {"abs_path": "<anonymous>"}, {"abs_path": "<anonymous>"}]
    return _exception_event({"stacktrace": {"frames": frames}})


BROWSER_EXTENSIONS = {"browserExtensions": {"isEnabled": True}}

EXTENSION_SOURCES = [
    "https://graph.facebook.com/",
    "https://connect.facebook.net/en_US/sdk.js",
    "https://eatdifferent.com.woopra-ns.com/main.js",
    "https://static.woopra.com/js/woopra.js",
    "chrome-extension://my-extension/or/something",
    "chrome://my-extension/or/something",
    "moz-extension://my-extension/or/something",
    "safari-extension://my-extension/or/something",
    "safari-web-extension://my-extension/or/something",
    "127.0.0.1:4001/isrunning",
    "webappstoolbarba.texthelp.com/",
    "http://metrics.itunes.apple.com.edgesuite.net/itunespreview/itunes/browser:firefo",
    "https://fscr.kaspersky-labs.com/B-9B72-7B7/main.js",
    "webkit-masked-url:",
]

EXTENSION_VALUES = [
    "what does conduitPage even do",
    "null is not an object (evaluating 'elt.parentNode')",
    "some error on top.GLOBALS",
    "biiig problem on originalCreateNotification",
    "canvas.contentDocument",
    "MyApp_RemoveAllHighlights",
    "http://tt.epicplay.com/not/very/good",
    "Can't find variable: ZiteReader, I wonder why?",
    "jigsaw is not defined and I'm not happy about it",
    "ComboSearch is not defined",
    "http://loading.retry.widdit.com/some/obscure/error",
    "atomicFindClose has messed up",
    "bad news, we have a fb_xd_fragment",
    "oh no! we have a case of: bmi_SafeAddOnload, again !",
    "watch out ! EBCallBackMessageReceived",
    "error _gCrWeb",
    "conduitPage",
    "plugin.setSuspendState is not a function",
    "Extension context invalidated",
    "useless error webkit-masked-url: please filter",
    "TypeError: can't access dead object because dead stuff smells bad",
    "Cannot redefine property: solana",
    "Cannot redefine property: ethereum",
    "Cannot redefine property: googletag",
    "undefined is not an object (evaluating 'a.L')",
    "undefined is not an object (evaluating 'a.J')",
    'Permission denied to access property "correspondingUseElement"',
    'Permission denied to access property "document"',
    "Can't find variable: gmo",
]


@pytest.mark.parametrize("source", EXTENSION_SOURCES)
def test_browser_extension_sources(source: str) -> None:
    assert check(BROWSER_EXTENSIONS, _source_event(source)) == "browser-extensions"


@pytest.mark.parametrize("value", EXTENSION_VALUES)
def test_browser_extension_values(value: str) -> None:
    assert check(BROWSER_EXTENSIONS, _exception_event({"value": value})) == "browser-extensions"


def test_browser_extensions_disabled() -> None:
    settings = {"browserExtensions": {"isEnabled": False}}
    assert check(settings, _source_event("https://fscr.kaspersky-labs.com/B/main.js")) is None
    assert check(settings, _exception_event({"value": "fb_xd_fragment"})) is None


@pytest.mark.parametrize(
    "event",
    [
        _source_event("https://some/resonable/source.js"),
        _exception_event({"value": "some perfectly reasonable value"}),
        _exception_event({"value": "undefined is not an object (evaluating 'a!J')"}),
        _exception_event({"value": "fb_xd_fragment"}) | {"exception": {"values": [None, {}]}},
    ],
)
def test_browser_extensions_keep_normal_events(event: Event) -> None:
    assert check(BROWSER_EXTENSIONS, event) is None


def test_browser_extension_source_from_filename_before_normalization() -> None:
    # Relay's integration test sends frames with only `filename`; the last frame counts.
    frames = [{"filename": "a/different.file"}, {"filename": "chrome-extension://blablabla"}]
    event = {"exception": {"values": [{"value": "test", "stacktrace": {"frames": frames}}]}}
    assert check(BROWSER_EXTENSIONS, event) == "browser-extensions"


# --- web crawlers -------------------------------------------------------------------------

WEB_CRAWLERS = {"webCrawlers": {"isEnabled": True}}

CRAWLER_AGENTS = [
    "Mediapartners-Google",
    "AdsBot-Google",
    "Googlebot",
    "FeedFetcher-Google",
    "Storebot-Google",
    "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/121.0.0.0 Safari/537.36",
    "BingBot",
    "BingPreview",
    "Baiduspider",
    "Slurp",
    "Sogou",
    "facebook",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "facebookcatalog/1.0",
    "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "meta-externalfetcher/1.1",
    "ia_archiver",
    "bots ",
    "bots;",
    "bots)",
    "spider ",
    "spider;",
    "spider)",
    "Calypso AppCrawler",
    "pingdom",
    "lyticsbot",
    "AWS Security Scanner",
    "Mozilla/5.0 (Linux; Android 6.0.1; Calypso AppCrawler Build/MMB30Y; wv) AppleWebKit/537.36"
    " (KHTML, like Gecko) Version/4.0 Chrome/53.0.2785.124 Mobile Safari/537.36",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slack-ImgProxy 0.19 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "Mozilla/5.0 (compatible; HubSpot Crawler; web-crawlers@hubspot.com)",
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36"
    " (compatible; Bytespider; spider-feedback@bytedance.com)",
    "Better Uptime Bot Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/74.0.3729.169 Safari/537.36",
    "Mozilla/5.0 (compatible;Cloudflare-Healthchecks/1.0;+https://www.cloudflare.com/; "
    "healthcheck-id: 0d1ca23e292c8c14)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 "
    "Safari/537.36 GTmetrix",
    "Mozilla/5.0 (compatible; BrightEdgeOnCrawl/1.0; +http://www.oncrawl.com)",
    "ELB-HealthChecker/2.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko; compatible;"
    " Yeti/1.1; +https://naver.me/spd) Chrome/127.0.0.0 Safari/537.36",
    "Mozilla/5.0; ClaudeBot",
    "Mozilla/5.0; CCBot",
    "; OAI-SearchBot/1.0; +https://openai.com/searchbot",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.1; "
    "+https://openai.com/gptbot",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; "
    "+https://perplexity.ai/perplexitybot)",
    "Mozilla/5.0 (Device; OS_version) AppleWebKit/WebKit_version (KHTML, like Gecko)"
    "Version/Safari_version [Mobile/Mobile_version] Safari/WebKit_version "
    "(Applebot/Applebot_version; +http://www.apple.com/go/applebot)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Lightpanda/1.0",
]

NORMAL_AGENTS = [
    "some user agent",
    "IE",
    "ie",
    "opera",
    "safari",
    "APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)",
    "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2228.0 "
    "Safari/537.36",
    "Slackbot 1.0(+https://api.slack.com/robots)",
    "SentryUptimeBot/1.0 (+http://docs.sentry.io/product/alerts/uptime-monitoring/)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
    "+https://openai.com/bot",
]


def ua_event(user_agent: str) -> Event:
    # Header name spelled oddly on purpose: the lookup ignores case, like Relay's.
    return {"request": {"headers": [["UsEr-AgeNT", user_agent]]}}


@pytest.mark.parametrize("agent", CRAWLER_AGENTS)
def test_web_crawlers_filtered(agent: str) -> None:
    assert check(WEB_CRAWLERS, ua_event(agent)) == "web-crawlers"


@pytest.mark.parametrize("agent", NORMAL_AGENTS)
def test_normal_agents_not_crawlers(agent: str) -> None:
    assert check(WEB_CRAWLERS, ua_event(agent)) is None


def test_web_crawlers_disabled_and_header_object() -> None:
    assert check({"webCrawlers": {"isEnabled": False}}, ua_event("Googlebot")) is None
    # The raw SDK shape (headers as an object) works too.
    event = {"request": {"headers": {"User-Agent": "BingBot"}}}
    assert check(WEB_CRAWLERS, event) == "web-crawlers"


def test_http_user_agent_argument_is_not_used_for_events() -> None:
    filters = compile_filters(WEB_CRAWLERS)
    assert filters.should_filter({}, client_ip=None, user_agent="Googlebot") is None


# --- legacy browsers ----------------------------------------------------------------------

IE8_UA = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; GTB7.4; InfoPath.2; SV1; .NET CLR 3.3.69573; WOW64; en-US)"  # noqa: E501
IE9_UA = "Mozilla/5.0 (Windows; U; MSIE 9.0; WIndows NT 9.0; en-US))"
IE_MOBILE9_UA = "Mozilla/5.0 (compatible; MSIE 9.0; Windows Phone OS 7.5; Trident/5.0; IEMobile/9.0; NOKIA; Lumia 710)"  # noqa: E501
IE10_UA = "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; WOW64; Trident/6.0)"
IE11_UA = "Mozilla/5.0 (Windows NT 6.3; Trident/7.0; rv:11.0) like Gecko"
OPERA_MINI_PRE8_UA = (
    "Opera/9.80 (J2ME/MIDP; Opera Mini/7.0.32796/59.323; U; fr) Presto/2.12.423 Version/12.16"
)
OPERA_MINI_8_UA = (
    "Opera/9.80 (J2ME/MIDP; Opera Mini/8.0.35158/36.2534; U; en) Presto/2.12.423 Version/12.16"
)
OPERA_PRE15_UA = "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/27.0.1453.12 Safari/537.36 OPR/14.0.1116.4"  # noqa: E501
OPERA_15_UA = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/28.0.1500.45 Safari/537.36 OPR/15.0.1147.61 (Edition Next)"  # noqa: E501
ANDROID_PRE4_UA = "Mozilla/5.0 (Linux; U; Android 3.2; nl-nl; GT-P6800 Build/HTJ85B) AppleWebKit/534.13 (KHTML, like Gecko) Version/4.0 Safari/534.13"  # noqa: E501
ANDROID_4_UA = "Mozilla/5.0 (Linux; U; Android 4.1.1; en-gb; Build/KLP) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Safari/534.30"  # noqa: E501
SAFARI_PRE6_UA = "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 1063; tr-DE) AppleWebKit/533.16 (KHTML like Gecko) Version/5.0 Safari/533.16"  # noqa: E501
SAFARI_6_UA = "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.17.4; en-GB) AppleWebKit/605.1.5 (KHTML, like Gecko) Version/6.0 Safari/605.1.5"  # noqa: E501
EDGE_ANDROID_118_UA = "Mozilla/5.0 (Linux; Android 10; Pixel 3 XL) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.80 Mobile Safari/537.36 EdgA/118.0.2088.58"  # noqa: E501
EDGE_79_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3919.0 Safari/537.36 Edg/79.0.294.1"  # noqa: E501
EDGE_18_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582"  # noqa: E501
EDGE_12_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 Edge/12.246"  # noqa: E501
OPERA_UA = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/28.0.1500.45 Safari/537.36 OPR/49.0.1147.61"  # noqa: E501
OPERA_MINI_UA = (
    "Opera/20.80 (J2ME/MIDP; Opera Mini/16.0.35158/36.2534; U; en) Presto/2.12.423 Version/12.16"
)
CHROME_UA = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/58.0.2228.0 Safari/537.36"  # noqa: E501
FIREFOX_UA = "Mozilla/5.0 (Windows NT 6.1; rv:60.0) Gecko/20100101 Firefox/60.0"
IE_UA = IE11_UA
EDGE_UA = EDGE_18_UA
SAFARI_UA = SAFARI_6_UA
ANDROID_UA = ANDROID_PRE4_UA

# User agents from Sentry's own tests.
ANDROID2_S_UA = "Mozilla/5.0 (Linux; U; Android 2.3.5; en-us; HTC Vision Build/GRI40) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/533.1"  # noqa: E501
ANDROID4_S_UA = "Mozilla/5.0 (Linux; Android 4.0.4; Galaxy Nexus Build/IMM76B) AppleWebKit/535.19 (KHTML, like Gecko) Chrome/18.0.1025.133 Mobile Safari/535.19"  # noqa: E501
IE5_S_UA = "Mozilla/4.0 (compatible; MSIE 5.50; Windows NT; SiteKiosk 4.9; SiteCoach 1.0)"
IE8_S_UA = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Win64; x64; Trident/4.0; .NET CLR 2.0.50727; SLCC2; .NET CLR 3.5.30729; .NET CLR 3.0.30729; Media Center PC 6.0; MDDC; Tablet PC 2.0)"  # noqa: E501
IE9_S_UA = "Mozilla/5.0 (Windows; U; MSIE 9.0; WIndows NT 9.0; en-US))"
IE_MOBILE9_S_UA = IE_MOBILE9_UA
IE10_S_UA = "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 7.0; InfoPath.3; .NET CLR 3.1.40767; Trident/6.0; en-IN)"  # noqa: E501
IE_MOBILE10_S_UA = "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; Touch; NOKIA; Lumia 520)"  # noqa: E501
OPERA11_S_UA = "Opera/9.80 (Windows NT 5.1; U; it) Presto/2.7.62 Version/11.00"
OPERA_12_S_UA = "Opera/9.80 (X11; Linux i686; Ubuntu/14.10) Presto/2.12.388 Version/12.16"
OPERA_15_S_UA = "Mozilla/5.0 (X11; Linux x86_64; Debian) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/28.0.1500.52 Safari/537.36 OPR/15.0.1147.100"  # noqa: E501
CHROME_S_UA = "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2228.0 Safari/537.36"  # noqa: E501
EDGE_S_UA = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 Edge/12.10136"  # noqa: E501
SAFARI5_S_UA = "Mozilla/5.0 (Windows; U; Windows NT 6.1; zh-HK) AppleWebKit/533.18.1 (KHTML, like Gecko) Version/5.0.2 Safari/533.18.5"  # noqa: E501
SAFARI7_S_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_3) AppleWebKit/537.75.14 (KHTML, like Gecko) Version/7.0.3 Safari/7046A194A"  # noqa: E501


def legacy(options: list[str], enabled: bool = True) -> dict[str, Any]:
    return {"legacyBrowsers": {"isEnabled": enabled, "options": options}}


def test_legacy_browsers_disabled_or_without_options() -> None:
    assert check(legacy(["default"], enabled=False), ua_event(IE8_UA)) is None
    assert check(legacy([]), ua_event(IE8_UA)) is None
    assert check({"legacyBrowsers": {"isEnabled": True}}, ua_event(IE8_UA)) is None


@pytest.mark.parametrize(
    ("agent", "options"),
    [
        (IE9_UA, ["default"]),
        (IE_MOBILE9_UA, ["default"]),
        (SAFARI_PRE6_UA, ["default"]),
        (OPERA_PRE15_UA, ["default"]),
        (ANDROID_PRE4_UA, ["default"]),
        (OPERA_MINI_PRE8_UA, ["default"]),
        (IE10_UA, ["android_pre_4", "ie10"]),
        (IE11_UA, ["ie11"]),
        (IE10_UA, ["ie10"]),
        (IE9_UA, ["ie9"]),
        (IE_MOBILE9_UA, ["ie9"]),
        (IE9_UA, ["android_pre_4", "ie9"]),
        (IE8_UA, ["ie_pre_9"]),
        (IE8_UA, ["opera_pre_15", "ie_pre_9"]),
        (OPERA_PRE15_UA, ["opera_pre_15"]),
        (OPERA_PRE15_UA, ["ie10", "opera_pre_15"]),
        (OPERA_MINI_PRE8_UA, ["opera_mini_pre_8"]),
        (OPERA_MINI_PRE8_UA, ["ie10", "opera_mini_pre_8"]),
        (ANDROID_PRE4_UA, ["android_pre_4"]),
        (ANDROID_PRE4_UA, ["ie10", "android_pre_4"]),
        (SAFARI_PRE6_UA, ["safari_pre_6"]),
        (SAFARI_PRE6_UA, ["opera_pre_15", "safari_pre_6"]),
        (EDGE_12_UA, ["edge_pre_79"]),
        (EDGE_18_UA, ["opera_pre_15", "edge_pre_79"]),
        (OPERA_UA, ["opera"]),
        (OPERA_MINI_UA, ["opera_mini"]),
        (CHROME_UA, ["chrome"]),
        (FIREFOX_UA, ["firefox"]),
        (IE_UA, ["ie"]),
        (EDGE_UA, ["edge"]),
        (SAFARI_UA, ["safari"]),
        (ANDROID_UA, ["android"]),
        # Sentry compatibility vectors
        (ANDROID2_S_UA, ["default"]),
        (IE9_S_UA, ["default"]),
        (IE_MOBILE9_S_UA, ["default"]),
        (IE5_S_UA, ["default"]),
        (OPERA11_S_UA, ["default"]),
        (OPERA_12_S_UA, ["default"]),
        (OPERA_MINI7_S_UA := OPERA_MINI_PRE8_UA, ["default"]),
        (OPERA_12_S_UA, ["opera_pre_15"]),
        (OPERA_MINI7_S_UA, ["opera_mini_pre_8"]),
        (IE8_S_UA, ["ie_pre_9"]),
        (IE8_S_UA, ["default"]),
        (IE9_S_UA, ["ie9"]),
        (IE_MOBILE9_S_UA, ["ie9"]),
        (IE10_S_UA, ["ie10"]),
        (IE_MOBILE10_S_UA, ["ie10"]),
        (SAFARI5_S_UA, ["safari_pre_6"]),
        (SAFARI5_S_UA, ["default"]),
        (ANDROID2_S_UA, ["android_pre_4"]),
    ],
)
def test_legacy_browsers_filtered(agent: str, options: list[str]) -> None:
    assert check(legacy(options), ua_event(agent)) == "legacy-browsers", parse_user_agent(agent)


@pytest.mark.parametrize(
    ("agent", "options"),
    [
        (IE10_UA, ["default"]),
        (SAFARI_6_UA, ["default"]),
        (OPERA_15_UA, ["default"]),
        (ANDROID_4_UA, ["default"]),
        (OPERA_MINI_8_UA, ["default"]),
        (IE11_UA, ["ie10"]),
        (IE10_UA, ["ie9"]),
        (IE10_UA, ["ie11"]),
        (IE9_UA, ["ie_pre_9"]),
        (OPERA_15_UA, ["opera_pre_15"]),
        (OPERA_MINI_8_UA, ["opera_mini_pre_8"]),
        (ANDROID_4_UA, ["android_pre_4"]),
        (SAFARI_6_UA, ["safari_pre_6"]),
        (EDGE_12_UA, ["ie10"]),
        (EDGE_18_UA, ["ie10"]),
        (EDGE_79_UA, ["edge_pre_79"]),
        (EDGE_ANDROID_118_UA, ["edge_pre_79"]),
        (ANDROID4_S_UA, ["default"]),
        (IE10_S_UA, ["default"]),
        (IE_MOBILE10_S_UA, ["default"]),
        (CHROME_S_UA, ["default"]),
        (EDGE_S_UA, ["default"]),
        (OPERA_15_S_UA, ["default"]),
        (OPERA_MINI_8_UA, ["default"]),
        (SAFARI7_S_UA, ["default"]),
        (IE8_UA, ["some_future_option"]),
    ],
)
def test_legacy_browsers_kept(agent: str, options: list[str]) -> None:
    assert check(legacy(options), ua_event(agent)) is None, parse_user_agent(agent)


def test_legacy_browser_table_on_parsed_agents() -> None:
    assert is_legacy_browser(ParsedUserAgent("IE Mobile", "9"), frozenset({"ie9"}))
    assert not is_legacy_browser(ParsedUserAgent("Other"), frozenset({"default"}))
    assert not is_legacy_browser(ParsedUserAgent("Chrome", "x"), frozenset({"chrome"}))
    assert is_legacy_browser(ParsedUserAgent("Chrome", "110"), frozenset({"chrome"}))
    assert not is_legacy_browser(ParsedUserAgent("Chrome", "111"), frozenset({"chrome"}))


def test_user_agent_cache_is_bounded() -> None:
    from relay.filters import useragent

    for i in range(useragent.CACHE_SIZE + 10):
        parse_user_agent(f"agent {i}")
    assert len(useragent._cache) <= useragent.CACHE_SIZE
    assert parse_user_agent("garbage") == ParsedUserAgent("Other")


# --- localhost ----------------------------------------------------------------------------

LOCALHOST = {"localhost": {"isEnabled": True}}


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1"])
def test_localhost_user_ip(ip: str) -> None:
    assert check(LOCALHOST, {"user": {"ip_address": ip}}) == "localhost"
    assert check({"localhost": {"isEnabled": False}}, {"user": {"ip_address": ip}}) is None


@pytest.mark.parametrize("ip", ["133.12.12.1", "2001:db8:0:0:0:ff00:42:8329"])
def test_localhost_keeps_other_ips(ip: str) -> None:
    assert check(LOCALHOST, {"user": {"ip_address": ip}}) is None


def test_localhost_keeps_empty_event() -> None:
    assert check(LOCALHOST, {}) is None


@pytest.mark.parametrize(
    "domain", ["127.0.0.1", "localhost", "foo.localhost", "foo.bar.baz.localhost"]
)
def test_localhost_domains(domain: str) -> None:
    assert check(LOCALHOST, {"request": {"url": f"http://{domain}:8080/"}}) == "localhost"


@pytest.mark.parametrize(
    "domain",
    [
        "my.dom.com",
        "123.123.123.44",
        "localhost.com",
        "foolocalhost",
        "localhostbar",
        "alocalhostgoesintoabar",
    ],
)
def test_localhost_keeps_other_domains(domain: str) -> None:
    assert check(LOCALHOST, {"request": {"url": f"http://{domain}:8080/"}}) is None


def test_localhost_file_urls() -> None:
    url = "file:///Users/Maisey/work/squirrelchasers/src/leaderboard.html"
    assert check(LOCALHOST, {"request": {"url": url}}) == "localhost"
    url = "http://www.squirrelchasers.com/leaderboard"
    assert check(LOCALHOST, {"request": {"url": url}}) is None
    assert check(LOCALHOST, {"request": {"url": "localhost/relative"}}) is None


@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host", "host", "x-forwarded-host"])
@pytest.mark.parametrize("value", ["localhost:3000", "127.0.0.1:3000", "localhost"])
def test_localhost_headers(header: str, value: str) -> None:
    assert check(LOCALHOST, {"user": None, "request": {"headers": [[header, value]]}}) == (
        "localhost"
    )
    # The SDK object form, as Relay's integration tests send it.
    assert check(LOCALHOST, {"request": {"headers": {header: value}}}) == "localhost"


@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host"])
@pytest.mark.parametrize(
    "value", ["localhost.sentry.io", "localhost.sentry.io:3000", "example.com"]
)
def test_localhost_keeps_other_hosts(header: str, value: str) -> None:
    event = {"user": {"ip_address": None}, "request": {"headers": [[header, value]]}}
    assert check(LOCALHOST, event) is None


# --- error messages -----------------------------------------------------------------------

ERROR_CONFIGS = [
    ["filteredexception*", "*this is a filtered exception.", "", "this is"],
    [
        "filteredexception: this is a filtered exception.",
        "filteredexception",
        "this is a filtered exception.",
    ],
]

ERROR_CASES: list[tuple[str | None, str | None, str, bool]] = [
    ("UnfilteredException", None, "UnfilteredException", True),
    (None, "This is an unfiltered exception.", "This is an unfiltered exception.", True),
    (None, None, "This is an unfiltered exception.", True),
    (None, None, "", True),
    (
        "UnfilteredException",
        "This is an unfiltered exception.",
        "UnfilteredException: This is an unfiltered exception.",
        True,
    ),
    ("FilteredException", None, "FilteredException", False),
    (None, "This is a filtered exception.", "This is a filtered exception.", False),
    (None, None, "This is a filtered exception.", False),
    (
        "FilteredException",
        "This is a filtered exception.",
        "FilteredException: This is a filtered exception.",
        False,
    ),
    (
        "OtherException",
        "This is a random exception.",
        "FilteredException: This is a filtered exception.",
        False,
    ),
    (None, None, "FilteredException: This is a filtered exception.", False),
    (
        "FilteredException",
        "This is a filtered exception.",
        "hi this is a legit log message",
        False,
    ),
]


@pytest.mark.parametrize("patterns", ERROR_CONFIGS)
@pytest.mark.parametrize(("ty", "value", "formatted", "kept"), ERROR_CASES)
def test_error_messages(
    patterns: list[str], ty: str | None, value: str | None, formatted: str, kept: bool
) -> None:
    exc: dict[str, Any] = {}
    if ty is not None:
        exc["type"] = ty
    if value is not None:
        exc["value"] = value
    event = {"exception": {"values": [exc]}, "logentry": {"formatted": formatted}}
    expected = None if kept else "error-message"
    assert check({"errorMessages": {"patterns": patterns}}, event) == expected


def test_error_message_hydration_error() -> None:
    pattern = "*https://reactjs.org/docs/error-decoder.html?invariant={418,419,422,423,425}*"
    value = (
        "Minified React error #423; visit https://reactjs.org/docs/error-decoder.html?invariant="
        "423 for the full message or use the non-minified dev environment for full errors and "
        "additional helpful warnings."
    )
    event = {"exception": {"values": [{"type": "Error", "value": value}]}}
    assert check({"errorMessages": {"patterns": [pattern]}}, event) == "error-message"


@pytest.mark.parametrize(
    ("patterns", "messages"),
    [
        (
            ["ChunkLoadError: Loading chunk *", "*Uncaught *: ChunkLoadError: Loading chunk *"],
            [
                "Error: Uncaught (in promise): ChunkLoadError: Loading chunk 175 failed.",
                "Uncaught (in promise): ChunkLoadError: Loading chunk 175 failed.",
                "ChunkLoadError: Loading chunk 552 failed.",
            ],
        ),
        (
            [
                "ChunkLoadError: Failed to load chunk *",
                "*Uncaught *: ChunkLoadError: Failed to load chunk *",
            ],
            [
                "Error: Uncaught (in promise): ChunkLoadError: Failed to load chunk 175.",
                "Uncaught (in promise): ChunkLoadError: Failed to load chunk 175.",
                "ChunkLoadError: Failed to load chunk 552.",
            ],
        ),
    ],
)
def test_error_message_chunk_load_errors(patterns: list[str], messages: list[str]) -> None:
    for message in messages:
        event = {"logentry": {"formatted": message}}
        assert check({"errorMessages": {"patterns": patterns}}, event) == "error-message"
    exc_event = {
        "exception": {"values": [{"type": "ChunkLoadError", "value": "Failed to load chunk 1."}]}
    }
    settings = {"errorMessages": {"patterns": ["ChunkLoadError: Failed to load chunk *"]}}
    assert check(settings, exc_event) == "error-message"


@pytest.mark.parametrize(
    ("event", "filtered"),
    [
        ({"logentry": {"message": "filter:"}}, False),
        ({"logentry": {"message": "filter:yes"}}, True),
        ({"logentry": {"message": "filter:%s", "params": ["no"], "formatted": "filter:no"}}, False),
        ({"logentry": {"message": "filter:%s", "formatted": "filter:yes"}}, True),
        # `formatted` wins over `message` when present.
        ({"logentry": {"message": "yes", "formatted": "no"}}, False),
        ({"message": "filter:yes"}, True),
    ],
)
def test_error_message_logentry(event: Event, filtered: bool) -> None:
    result = check({"errorMessages": {"patterns": ["*yes*"]}}, event)
    assert result == ("error-message" if filtered else None)


# --- releases -----------------------------------------------------------------------------

RELEASE_CASES: list[tuple[str, list[str], bool]] = [
    ("1.2.3", ["1.3.0", "1.2.3", "1.3.1"], True),
    ("1.2.3", ["1.3.0", "1.3.1", "1.2.3"], True),
    ("1.2.3", ["1.2.3", "1.3.0", "1.3.1"], True),
    ("1.2.3", ["1.3.0", "1.2.*", "1.3.1"], True),
    ("1.2.3", ["1.3.0", "1.3.*", "1.*"], True),
    ("1.2.3", ["*", "1.3.0", "1.3.*"], True),
    ("1.2.3", ["1.3.0", "1.2.4", "1.3.1"], False),
    ("1.2.3", ["1.4.0", "1.3.*", "3.*"], False),
    ("1.2.3", [], False),
    ("1.2.3", ["1.1.1", "1.1.2", "1.3.1"], False),
    ("1.2.3", ["1.2.3"], True),
    ("1.2.3", ["1.2.*", "1.3.0", "1.3.1"], True),
    ("1.2.3", ["1.3.0", "1.*", "1.3.1"], True),
    ("MyApp@1.0", ["myapp@*"], True),
]


@pytest.mark.parametrize(("release", "blocked", "filtered"), RELEASE_CASES)
def test_releases(release: str, blocked: list[str], filtered: bool) -> None:
    result = check({"releases": {"releases": blocked}}, {"release": release})
    assert result == ("release-version" if filtered else None)


# --- client ips ---------------------------------------------------------------------------

CLIENT_IP_CASES: list[tuple[str, list[str], bool]] = [
    ("1.2.3.4", [], False),
    ("122.33.230.14", ["122.33.230.14"], True),
    ("122.33.230.14", ["112.133.110.33", "122.33.230.14"], True),
    ("aaaa:bbbb::cccc", ["aaaa:bbbb::cccc"], True),
    ("aaaa:bbbb::cccc", ["121.121.12.121", "aaaa:bbbb::cccc"], True),
    ("aaaa:bbbb::ccce", ["aaaa:bbbb::cccc"], False),
    ("122.33.230.1", ["122.33.230.0/30"], True),
    ("122.33.230.2", ["122.33.230.0/30"], True),
    ("122.33.230.4", ["122.33.230.0/30"], False),
    ("122.33.230.5", ["122.33.230.4/30"], True),
    ("a:b:c::1", ["a:b:c::0/126"], True),
    ("a:b:c::2", ["a:b:c::0/126"], True),
    ("a:b:c::4", ["a:b:c::0/126"], False),
    ("a:b:c::5", ["a:b:c::4/126"], True),
    ("127.0.0.1", [], False),
    ("127.0.0.1", ["0.0.0.0", "192.168.1.1", "10.0.0.0/8"], False),
    ("127.0.0.1", ["127.0.0.1"], True),
    ("127.0.0.1", ["0.0.0.0", "127.0.0.1", "192.168.1.1"], True),
    ("127.0.0.1", ["127.0.0.0/8"], True),
    ("127.0.0.1", ["0.0.0.0", "127.0.0.0/8", "192.168.1.0/8"], True),
    ("127.0.0.1", ["lol/bar"], False),
    ("1.2.3.4", ["1.2.3.0/24"], True),
]


@pytest.mark.parametrize(("ip", "blocked", "filtered"), CLIENT_IP_CASES)
def test_client_ips(ip: str, blocked: list[str], filtered: bool) -> None:
    result = check({"clientIps": {"blacklistedIps": blocked}}, {}, client_ip=ip)
    assert result == ("ip-address" if filtered else None)


def test_client_ips_without_or_with_bad_client_ip() -> None:
    settings = {"clientIps": {"blacklistedIps": ["0.0.0.0/0"]}}
    assert check(settings, {}, client_ip=None) is None
    assert check(settings, {}, client_ip="not an ip") is None
    # The user IP in the event is not the client IP.
    assert check(settings, {"user": {"ip_address": "1.2.3.4"}}) is None


# --- transaction names (health checks) ----------------------------------------------------

HEALTH_CHECK_PATTERNS = [
    "*healthcheck*",
    "*healthy*",
    "live",
    "live[z/-]*",
    "*[/-]live",
    "*[/-]live[z/-]*",
    "ready",
    "ready[z/-]*",
    "*[/-]ready",
    "*[/-]ready[z/-]*",
    "*heartbeat*",
    "*/health{/,}",
    "*/healthz",
    "*/ping",
    "*/up",
    "*/actuator/health{/*,}",
    "*/manage/health{/*,}",
]
IGNORE = {"ignoreTransactions": {"patterns": HEALTH_CHECK_PATTERNS, "isEnabled": True}}


def tx(name: str | None, ty: str = "transaction") -> Event:
    event: Event = {"type": ty}
    if name is not None:
        event["transaction"] = name
    return event


@pytest.mark.parametrize(
    "name",
    [
        "a/b/healthcheck/c",
        "a_HEALTHCHECK_b",
        "healthcheck",
        "/health",
        "a/HEALTH",
        "live",
        "livez",
        "live/123",
        "live-33",
        "x-live",
        "abc/live",
        "abc/live-23",
        "ready",
        "123/ready",
        "readyz",
        "ready/123",
        "abc/ready/1234",
        "abcheartbeat123",
        "123/health",
        "123/healthz",
        "123/ping",
        "/up",
        "123/up",
        "/actuator/health",
        "/actuator/health/",
        "foo/actuator/health/db",
        "/manage/health",
        "/manage/health/",
        "foo/manage/health/db",
    ],
)
def test_ignore_transactions_matches(name: str) -> None:
    assert check(IGNORE, tx(name)) == "filtered-transaction"


@pytest.mark.parametrize(
    "name",
    [
        "bad",
        "/bad",
        "a/b/c",
        "health",
        "healthz",
        "/healthz/",
        "/healthx",
        "/healthzx",
        "service-delivery",
        "delivery",
        "notready",
        "already",
        "/upload",
        "foo/health/bar",
    ],
)
def test_ignore_transactions_keeps(name: str) -> None:
    assert check(IGNORE, tx(name)) is None


def test_ignore_transactions_edge_cases() -> None:
    assert check(IGNORE, tx(None)) is None
    empty = {"ignoreTransactions": {"patterns": [], "isEnabled": True}}
    assert check(empty, tx("/health")) is None
    disabled = {"ignoreTransactions": {"patterns": HEALTH_CHECK_PATTERNS, "isEnabled": False}}
    assert check(disabled, tx("/health")) is None
    for ty in ("error", "csp"):
        assert check(IGNORE, tx("/health", ty)) is None
    suite = {"ignoreTransactions": {"patterns": ["health*"], "isEnabled": True}}
    assert check(suite, tx("health-check-1 ")) == "filtered-transaction"
    assert check(suite, tx("some-transaction-3")) is None


# --- order --------------------------------------------------------------------------------


def test_first_filter_in_relay_order_wins() -> None:
    settings: dict[str, Any] = {
        "localhost": {"isEnabled": True},
        "releases": {"releases": ["1.0"]},
        "clientIps": {"blacklistedIps": ["10.0.0.0/8"]},
        "errorMessages": {"patterns": ["*boom*"]},
        "webCrawlers": {"isEnabled": True},
        "generic": {
            "version": 1,
            "filters": [
                {
                    "id": "genericFirst",
                    "isEnabled": True,
                    "condition": {"op": "eq", "name": "event.environment", "value": "prod"},
                }
            ],
        },
    }
    event: Event = {
        "release": "1.0",
        "environment": "prod",
        "logentry": {"formatted": "boom"},
        "user": {"ip_address": "127.0.0.1"},
        "request": {"headers": [["User-Agent", "Googlebot"]]},
    }
    filters = compile_filters(settings)
    assert filters.should_filter(event, client_ip="10.1.1.1") == "genericFirst"
    event["environment"] = "dev"
    assert filters.should_filter(event, client_ip="10.1.1.1") == FilterStatKey.IP_ADDRESS
    assert filters.should_filter(event, client_ip=None) == "release-version"
    event["release"] = "2.0"
    assert filters.should_filter(event) == "error-message"
    event["logentry"] = {"formatted": "calm"}
    assert filters.should_filter(event) == "localhost"
    event["user"] = {}
    assert filters.should_filter(event) == "web-crawlers"
