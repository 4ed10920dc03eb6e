"""`redact_url`, the one rule for naming an address in a message or a log: a secret put anywhere
in a URL or a DSN (the user, the password, a query value, the fragment, a token in the path;
raw, percent-encoded, or re-encoded as requests sends it) never shows, in any spelling, while
the host stays visible; and nothing, however malformed, makes it raise."""

import logging
import string
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from requests.utils import requote_uri

from salesops_pipeline.redaction import (
    HIDDEN,
    hide_urls_in_logs,
    redact_url,
    redact_urls_in,
)

HOSTS = [
    "hooks.slack.com",
    "chat.googleapis.com",
    "db.example.internal",
    "127.0.0.1",
    "[::1]",
    "[2001:db8::5]",
    "[fe80::1%25eth0]",
]
# Characters a password or a query value may hold; percent signs and spaces included.
SECRET_CHARACTERS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#% é|\"<>"
secrets = st.text(alphabet=SECRET_CHARACTERS, min_size=8, max_size=40)
# What a webhook's path token is made of (Slack's, Discord's, a UUID's characters).
path_tokens = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=16, max_size=80
)
# A fixed stand-in of the same kind as each secret: the shown URL must be the same with either,
# which is to say that it tells nothing of the secret.
STAND_IN = "Stand1nStand1nStand1n"


def _encoded_every_byte(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def _spellings(secret: str) -> set[str]:
    """`secret` as given, and as any layer may have encoded it on the way."""
    encoded = {
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        requote_uri(secret),
        _encoded_every_byte(secret),
    }
    return {secret} | encoded | {spelling.lower() for spelling in encoded}


def _http(host: str, secret: str, position: str) -> str:
    """An http(s) URL holding `secret` at `position`, spelled as an HTTP client would send it."""
    token = quote(secret, safe="")
    return {
        "user": f"https://{token}@{host}/services/hook",
        "user and password": f"https://{token}:{token}@{host}:8443/v1/messages",
        "password": f"https://bot:{token}@{host}/v1/messages?threadKey=a",
        "query value": f"https://{host}/v1/spaces/AAAA/messages?key={token}&token={token}",
        "raw query value": f"https://{host}/v1/messages?key={quote(secret, safe='/:@?')}",
        "fragment": f"https://{host}/hooks#{secret}",
        "after a hooks segment": f"https://{host}/hooks/{token}",
    }[position]


def _database(host: str, secret: str, position: str, scheme: str) -> str:
    """A database URL holding `secret` at `position`, as SQLAlchemy and libpq accept it: the
    password raw but for `@` and `%`, which must be encoded."""
    raw_password = quote(secret, safe="/#?:!$&'()*+,;=~")
    return {
        "user": f"{scheme}://{quote(secret, safe='')}:pw@{host}:5432/sales",
        "password": f"{scheme}://salesops:{raw_password}@{host}:5432/sales",
        "encoded password": f"{scheme}://salesops:{quote(secret, safe='')}@{host}/sales",
        "query value": f"{scheme}://salesops@{host}/sales?sslpassword={quote(secret, safe='')}",
    }[position]


def _libpq_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _assert_hidden(url: str, stand_in_url: str, secret: str, host: str) -> None:
    shown = redact_url(url)
    # The secret leaves no trace: the same URL with another secret shows the same.
    assert shown == redact_url(stand_in_url), (url, shown)
    assume(secret not in redact_url(stand_in_url))  # not a piece of the host or a key
    for spelling in _spellings(secret):
        assert spelling not in shown, (url, shown, spelling)
    assert host in shown, (url, shown)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.sampled_from(HOSTS),
    secret=secrets,
    position=st.sampled_from(
        [
            "user",
            "user and password",
            "password",
            "query value",
            "raw query value",
            "fragment",
            "after a hooks segment",
        ]
    ),
    re_encoded=st.booleans(),
)
def test_no_secret_of_an_http_url_shows(host, secret, position, re_encoded):
    url, stand_in = _http(host, secret, position), _http(host, STAND_IN, position)
    if re_encoded:  # as requests sends it, and urllib3 logs it
        # requote_uri re-encodes a host's `%25` or not depending on the rest of the URL.
        assume("%" not in host)
        url, stand_in = requote_uri(url), requote_uri(stand_in)
    _assert_hidden(url, stand_in, secret, host)
    if re_encoded:
        # The lines urllib3 writes, naming the request target (path and query) or the URL.
        target = url[url.index("/", len("https://")) :].split("#", 1)[0]
        for line in (
            f"Retry: {target}",
            f"Incremented Retry for (url='{target}'): Retry(total=1, read=None)",
            f'https://{host}:443 "POST {target} HTTP/1.1" 503 2',
            f"Max retries exceeded with url: {target} (Caused by ResponseError('503'))",
            f"Redirecting {url} -> {url}",
        ):
            shown = redact_urls_in(line)
            for spelling in _spellings(secret):
                assert spelling not in shown, (line, shown, spelling)


@settings(max_examples=200)
@given(
    host=st.sampled_from(HOSTS),
    token=path_tokens,
    layout=st.sampled_from(
        [
            "/services/T000/B000/{}",  # Slack
            "/api/webhooks/123456789012345678/{}",  # Discord
            "/webhookb2/{}/IncomingWebhook/{}/{}",  # Teams
            "/hooks/{}",  # Mattermost
            "/webhook/{}",
            "/v1/{}/send",  # a token anywhere, known to no rule but its length
        ]
    ),
    spelling=st.sampled_from(["raw", "every byte encoded", "re-encoded"]),
)
def test_a_token_in_the_path_never_shows(host, token, layout, spelling):
    def url_with(secret: str) -> str:
        if spelling == "every byte encoded":
            secret = _encoded_every_byte(secret)
        url = f"https://{host}" + layout.format(secret, secret, secret)
        return requote_uri(url) if spelling == "re-encoded" else url

    _assert_hidden(url_with(token), url_with(STAND_IN), token, host)


@settings(max_examples=300)
@given(
    host=st.sampled_from(HOSTS),
    secret=secrets,
    position=st.sampled_from(["user", "password", "encoded password", "query value"]),
    scheme=st.sampled_from(["postgresql", "postgres", "postgresql+psycopg2"]),
)
def test_no_secret_of_a_database_url_shows(host, secret, position, scheme):
    url = _database(host, secret, position, scheme)
    _assert_hidden(url, _database(host, STAND_IN, position, scheme), secret, host)


@settings(max_examples=200)
@given(
    host=st.sampled_from(["db.example.internal", "127.0.0.1", "::1", "/var/run/postgresql"]),
    secret=secrets,
    quoted=st.booleans(),
    order=st.permutations(["host", "port", "user", "password", "dbname", "sslmode"]),
)
def test_no_secret_of_a_libpq_string_shows(host, secret, quoted, order):
    def dsn(password: str) -> str:
        value = _libpq_quoted(password) if quoted or not password.isalnum() else password
        values = {
            "host": host,
            "port": "5432",
            "user": _libpq_quoted(password),
            "password": value,
            "dbname": "sales",
            "sslmode": "require",
        }
        return " ".join(f"{key}={values[key]}" for key in order)

    _assert_hidden(dsn(secret), dsn(STAND_IN), secret, host)
    assert "password=***" in redact_url(dsn(secret))


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary(), st.integers(), st.none()))
def test_it_never_raises_and_shows_one_line(value):
    shown = redact_url(value)
    assert isinstance(shown, str) and "\n" not in shown and "\r" not in shown
    assert isinstance(redact_urls_in(value), str)


@settings(max_examples=200)
@given(st.text(alphabet=SECRET_CHARACTERS + "/[]@:", max_size=60))
def test_garbage_after_a_scheme_never_raises(rest):
    for scheme in ("https://", "postgresql://", "//", ""):
        assert isinstance(redact_url(scheme + rest), str)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/***/***/***",
        ),
        (
            "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=k3y&token=t0k#frag",
            "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=***&token=***#***",
        ),
        ("https://admin:s3cret@[::1]:8443/x", "https://***@[::1]:8443/x"),
        ("postgresql://salesops:s3cr/et@db:5432/sales", "postgresql://***@db:5432/sales"),
        ("postgresql://h1:5432,h2:5433/sales", "postgresql://h1:5432,h2:5433/sales"),
        ("host=db port=5432 password='a b' dbname=x", "host=db port=5432 password=*** dbname=***"),
        ("salesops:s3cret@db/sales", "***@db/sales"),
        # What is not a secret stays as it was: the intake's own addresses.
        ("http://127.0.0.1:8020/webhooks/post-call", "http://127.0.0.1:8020/webhooks/post-call"),
        ("https://api.provider.example", "https://api.provider.example"),
        # A port that is not a number may be a misplaced password.
        ("http://host:s3cret/x", "http://host:***/x"),
        # A libpq string whose password looks like a URL is still a libpq string.
        ("host=db password='a://b@c' port=5432", "host=db password=*** port=5432"),
        # Before `://`, what is no scheme tells nothing that can be trusted.
        ("not a scheme://s3cret@host", HIDDEN),
    ],
)
def test_what_shows(url, shown):
    assert redact_url(url) == shown


def test_urls_in_free_text_are_redacted_where_they_stand():
    line = 'http://127.0.0.1:5000 "POST /services/T0/B0/tok?key=k3y HTTP/1.1" 503 2'
    assert redact_urls_in(line) == (
        'http://127.0.0.1:5000 "POST /services/***/***/***?key=*** HTTP/1.1" 503 2'
    )
    assert redact_urls_in("Max retries exceeded with url: /x?token=t0k (Caused by X)") == (
        f"Max retries exceeded with url: /x?token={HIDDEN} (Caused by X)"
    )
    assert redact_urls_in("no address here: 3/4 of HTTP/1.1") == "no address here: 3/4 of HTTP/1.1"


def test_a_logger_given_the_filter_shows_urls_redacted(caplog):
    logger = logging.getLogger("salesops_tests.redaction")
    hide_urls_in_logs((logger.name,))
    hide_urls_in_logs((logger.name,))  # once is enough: it is not added twice
    assert len(logger.filters) == 1
    caplog.set_level(logging.DEBUG, logger=logger.name)
    logger.warning("Retrying (%r) after connection broken by '%r': %s", 1, "reset", "/h?key=k3y")
    assert caplog.records[-1].getMessage().endswith(": /h?key=***")
    assert "k3y" not in caplog.text
