"""Unit tests for relay.protocol.auth (auth headers, query auth, DSNs, key checks)."""

from __future__ import annotations

import base64
import json

import pytest

from relay.errors import AuthError
from relay.protocol.auth import (
    MAX_PROTOCOL_VERSION,
    Auth,
    Dsn,
    InvalidPublicKey,
    UnsupportedProtocolVersion,
    auth_from_query,
    check_public_key,
    parse_auth_header,
    parse_basic_auth,
    parse_dsn,
    parse_public_key,
    validate_auth,
)
from tests.paths import CORPUS

KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
CORPUS_DSN = f"http://{KEY}@127.0.0.1:9411/42"
WIRE_DIR = CORPUS / "wire"


# -- X-Sentry-Auth ----------------------------------------------------------------------------


def test_parse_auth_header_python_sdk() -> None:
    auth = parse_auth_header(
        f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=sentry.python/2.75.0"
    )
    assert auth == Auth(public_key=KEY, version=7, client="sentry.python/2.75.0")
    assert auth.secret_key is None


@pytest.mark.parametrize(
    "value",
    [
        f"Sentry sentry_key={KEY},sentry_version=7",
        f"sentry sentry_key={KEY}, sentry_version=7",
        f"SENTRY  sentry_key = {KEY} ,  sentry_version = 7 ",
        f"  Sentry sentry_version=7, sentry_key={KEY}",
        f"sentry_key={KEY}, sentry_version=7",
        f"Sentry sentry_key={KEY}, sentry_version=7.0",
        f"Sentry sentry_key={KEY}, sentry_version=+7",
        f"Sentry sentry_key={KEY}, sentry_version=7, unknown=1, noequals",
    ],
)
def test_parse_auth_header_tolerant(value: str) -> None:
    auth = parse_auth_header(value)
    assert auth.public_key == KEY
    assert auth.version == 7


def test_parse_auth_header_all_fields() -> None:
    auth = parse_auth_header(
        f"Sentry sentry_key={KEY}, sentry_secret=s3cr3t, sentry_version=6, "
        "sentry_client=raven-js/3.0, sentry_timestamp=1700000000"
    )
    assert auth == Auth(public_key=KEY, secret_key="s3cr3t", version=6, client="raven-js/3.0")


def test_parse_auth_header_without_version() -> None:
    auth = parse_auth_header(f"Sentry sentry_key={KEY}")
    assert auth.version is None
    assert auth.protocol_version == 7


def test_parse_auth_header_duplicates_and_extra_equals() -> None:
    # Last value wins; "a=b=c" reads as ("a", "b"), like Relay.
    auth = parse_auth_header(f"Sentry sentry_key=first, sentry_key={KEY}, sentry_client=a=b")
    assert auth.public_key == KEY
    assert auth.client == "a"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Sentry",
        "Sentry sentry_version=7",
        "Sentry sentry_key=, sentry_version=7",
        f"Sentry sentry_key={KEY}, sentry_version=abc",
        f"Sentry sentry_key={KEY}, sentry_version=-1",
        f"Sentry sentry_key={KEY}, sentry_version=70000",
        f"Sentry sentry_key={KEY}, sentry_version=",
        "Bearer abcdef",
        "Basic YWJjOmRlZg==",
    ],
)
def test_parse_auth_header_errors(value: str) -> None:
    with pytest.raises(AuthError) as info:
        parse_auth_header(value)
    assert info.value.status == 401


def test_to_header_round_trip() -> None:
    auth = Auth(public_key=KEY, secret_key="x", version=7, client="sentry.relay/25.1")
    assert parse_auth_header(auth.to_header()) == auth
    assert Auth(public_key=KEY).to_header() == f"Sentry sentry_key={KEY}, sentry_version=7"


def test_corpus_auth_headers() -> None:
    for meta_path in sorted(WIRE_DIR.glob("*.meta.json")):
        headers = dict(json.loads(meta_path.read_text())["headers"])
        auth = parse_auth_header(headers["X-Sentry-Auth"])
        assert auth.public_key == KEY
        assert auth.version == 7
        assert auth.client == "sentry.python/2.75.0"
        validate_auth(auth)


# -- Basic auth -------------------------------------------------------------------------------


def basic(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_basic_auth() -> None:
    assert parse_basic_auth("Basic " + basic(f"{KEY}:secret")) == Auth(public_key=KEY)
    assert parse_basic_auth("basic " + basic(f"{KEY}:")) == Auth(public_key=KEY)
    assert parse_basic_auth(basic(f"{KEY}:x:y")) == Auth(public_key=KEY)


@pytest.mark.parametrize(
    "value",
    ["Basic !!!", "Basic " + basic(KEY), "Basic " + basic(":secret"), "Basic abc", "Basic "],
)
def test_parse_basic_auth_errors(value: str) -> None:
    with pytest.raises(AuthError):
        parse_basic_auth(value)


def test_parse_basic_auth_rejects_non_utf8() -> None:
    with pytest.raises(AuthError):
        parse_basic_auth("Basic " + base64.b64encode(b"\xff\xfe:x").decode())


# -- query auth -------------------------------------------------------------------------------


def test_auth_from_query() -> None:
    query = {"sentry_key": KEY, "sentry_version": "7", "sentry_client": "raven-js/3.0"}
    assert auth_from_query(query) == Auth(public_key=KEY, version=7, client="raven-js/3.0")
    assert auth_from_query({"sentry_key": KEY, "sentry_secret": "s"}) == Auth(
        public_key=KEY, secret_key="s"
    )


def test_auth_from_query_absent() -> None:
    assert auth_from_query({}) is None
    assert auth_from_query({"foo": "bar"}) is None


def test_auth_from_query_without_key() -> None:
    # Relay uses query auth as soon as the query mentions "sentry_", then needs a key.
    with pytest.raises(AuthError):
        auth_from_query({"sentry_version": "7"})
    with pytest.raises(AuthError):
        auth_from_query({"x": "sentry_data"})


# -- public keys and validation ---------------------------------------------------------------


def test_check_public_key() -> None:
    assert check_public_key(KEY)
    # Relay only requires 32 ASCII characters, not hex.
    assert check_public_key("z" * 32)
    assert not check_public_key(KEY[:-1])
    assert not check_public_key(KEY + "0")
    assert not check_public_key("é" * 32)
    assert not check_public_key("")


def test_parse_public_key_flags() -> None:
    assert parse_public_key(KEY) == (KEY, ())
    assert parse_public_key(f"{KEY}.no-cache") == (KEY, ("no-cache",))
    with pytest.raises(InvalidPublicKey) as info:
        parse_public_key("short.no-cache")
    assert info.value.status == 400
    assert isinstance(info.value, AuthError)


def test_validate_auth() -> None:
    validate_auth(Auth(public_key=KEY))
    validate_auth(Auth(public_key=KEY, version=MAX_PROTOCOL_VERSION))
    validate_auth(Auth(public_key=KEY, version=1))
    with pytest.raises(UnsupportedProtocolVersion) as info:
        validate_auth(Auth(public_key=KEY, version=8))
    assert info.value.status == 400
    assert isinstance(info.value, AuthError)
    assert "unsupported protocol version" in info.value.detail
    with pytest.raises(InvalidPublicKey):
        validate_auth(Auth(public_key="abc"))


def test_auth_is_frozen_and_hashable() -> None:
    auth = Auth(public_key=KEY)
    assert hash(auth) == hash(Auth(public_key=KEY))
    with pytest.raises(AttributeError):
        auth.public_key = "x"  # type: ignore[misc]


# -- DSN --------------------------------------------------------------------------------------


def test_parse_corpus_dsn() -> None:
    dsn = parse_dsn(CORPUS_DSN)
    assert dsn == Dsn(
        scheme="http",
        public_key=KEY,
        secret_key=None,
        host="127.0.0.1",
        port=9411,
        path="/",
        project_id="42",
    )
    assert dsn.numeric_project_id == 42
    assert dsn.effective_port == 9411
    assert str(dsn) == f"http://{KEY}:@127.0.0.1:9411/42"
    assert dsn.api_url("envelope") == "http://127.0.0.1:9411/api/42/envelope/"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("https://username:@domain/42", "https://username:@domain/42"),
        ("https://username@domain:8888/42", "https://username:@domain:8888/42"),
        ("https://username:password@domain:8888/42", "https://username:password@domain:8888/42"),
        ("http://username:@domain:8888/pathone/pathtwo/7", None),
        ("https://username:@domain:443/42", "https://username:@domain/42"),
        ("http://username:@domain:80/42", "http://username:@domain/42"),
        ("https://username:@domain/42/", "https://username:@domain/42"),
        ("https://username:@[::1]:9000/42", None),
        ("https://username:password@domain:8888/23%21", None),
    ],
)
def test_dsn_round_trip(text: str, canonical: str | None) -> None:
    dsn = parse_dsn(text)
    assert str(dsn) == (canonical or text)
    assert parse_dsn(str(dsn)) == dsn


def test_dsn_parts() -> None:
    dsn = parse_dsn("https://pub:sec@example.com/pathone/pathtwo/pid")
    assert (dsn.public_key, dsn.secret_key) == ("pub", "sec")
    assert (dsn.host, dsn.port, dsn.effective_port) == ("example.com", None, 443)
    assert (dsn.path, dsn.project_id) == ("/pathone/pathtwo/", "pid")
    assert dsn.numeric_project_id is None
    assert dsn.api_url("store") == "https://example.com/pathone/pathtwo/api/pid/store/"
    assert parse_dsn("http://k@[::1]:9000/3").host == "::1"
    assert parse_dsn("http://k@[::1]:9000/3").api_url("envelope") == (
        "http://[::1]:9000/api/3/envelope/"
    )


@pytest.mark.parametrize(
    "text",
    [
        "random string",
        "ftp://username:password@domain:8888/1",
        "https://:password@domain:8888/23",
        "https://username:password@:8888/42",
        "https://username:password@domain:8888/",
        "https://username:password@domain:8888",
        "https://username@domain:notaport/42",
        "https://username@domain:99999/42",
        "",
    ],
)
def test_dsn_errors(text: str) -> None:
    with pytest.raises(AuthError):
        parse_dsn(text)


def test_dsn_numeric_project_id_range() -> None:
    assert parse_dsn(f"https://{KEY}@h/{(1 << 64) - 1}").numeric_project_id == (1 << 64) - 1
    assert parse_dsn(f"https://{KEY}@h/{1 << 64}").numeric_project_id is None
