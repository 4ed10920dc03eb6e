"""Naming a URL or a database address in a message or a log line without giving away its secrets.

`redact_url` is the one rule for what of an address may be shown. Every message, banner, error
and log line that names a configured address goes through it, and so do the HTTP library's own
log lines (`hide_urls_in_logs`). It keeps what tells a person where something is: the scheme,
the host (an IPv6 one too), the port, the ordinary path segments and the query's keys. It hides:

- the userinfo: `user:password@` shows as `***@`. It is read as the HTTP client reads it (up to
  the last `@` before the path) and, for a database URL, also as the driver reads it (a
  password up to the first `@`, so one holding `/`, `?` or `#` is hidden whole);
- every query value, `?key=***&token=***`, and any query item that is not `key=value`;
- the fragment, `#***`;
- every path segment that looks like a token: 16 characters or more once percent-decoded (the
  tokens of Slack, Teams and Discord webhooks, a UUID), and every segment after one named
  `hook`, `hooks`, `webhook`, `services`, `token`, `key` or `secret` (Slack's
  `/services/T…/B…/…`, Mattermost's and Rocket.Chat's `/hooks/…`);
- in a libpq `key=value` string (`host=db password=…`), every value but the host's and the port's.

It never raises: what it cannot read is hidden whole, as `***`.
"""

import logging
import re
from urllib.parse import unquote

from salesops_pipeline.text import terminal_safe

HIDDEN = "***"
# A path segment this long (percent-decoded) is taken for a token.
TOKEN_LENGTH = 16
# Segments after one of these are a webhook's or an API's secret part.
_SECRET_PARENTS = frozenset(
    {
        "hook",
        "hooks",
        "webhook",
        "webhookb2",
        "services",
        "token",
        "tokens",
        "key",
        "keys",
        "apikey",
        "api_key",
        "api-key",
        "secret",
        "secrets",
    }
)
# Schemes whose URLs go to an HTTP client, which reads the userinfo as RFC 3986 says. Any other
# (a database's) may also be read the way SQLAlchemy reads it.
_HTTP_SCHEMES = frozenset({"http", "https", "ws", "wss"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}")
# `user:password@` as SQLAlchemy reads a database URL: the password runs to the first `@`.
_DRIVER_USERINFO = re.compile(r"(?!\[)[^:/]*:[^@]*@")
# The same for an HTTP URL, unless what follows the colon is a port: `host:8080/path?a=b@c`.
_HTTP_USERINFO = re.compile(r"(?!\[)[^:/?#]*:(?!\d*(?:[/?#]|$))[^@]*@")
_AUTHORITY = re.compile(r"[^/?#]*")
_IPV6_HOST = re.compile(r"(\[[^\]]*\])(?::(.*))?")
_PORT = re.compile(r"\d{0,5}")
_QUERY_KEY = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,32}")
_QUERY_SEPARATORS = re.compile(r"([&;])")

_CONNINFO_START = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_CONNINFO_ITEM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")
_CONNINFO_SHOWN = frozenset({"host", "hostaddr", "port"})
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9.:/\-_\[\],%]*")

# In free text: an absolute URL, or a request target (`/path?query`) starting a word or
# following a quote, a bracket or `=`, as the HTTP library writes them in its log lines.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*|(?<![^\s'\"(<\[=])/\S*")


def redact_url(value: object) -> str:
    """`value`, a URL, a request target (`/path?query`) or a libpq `key=value` string, with its
    secrets hidden (see the module's docstring), on one line. Never raises."""
    try:
        text = value if isinstance(value, str) else str(value)
        return terminal_safe(_redacted(text))
    except Exception:  # noqa: BLE001 - whatever the input, show nothing of it rather than fail
        return HIDDEN


def redact_urls_in(text: object) -> str:
    """`text` with every URL and request target in it shown as `redact_url` shows it: for
    messages that may quote an address, such as the HTTP library's log lines and exceptions."""
    try:
        message = text if isinstance(text, str) else str(text)
        return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), message)
    except Exception:  # noqa: BLE001 - as redact_url
        return HIDDEN


def _redacted(text: str) -> str:
    # First, as a URL's scheme cannot hold `=` but a libpq password may hold `://`.
    if _CONNINFO_START.match(text):
        return _conninfo(text)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if not _SCHEME.fullmatch(scheme):
            return HIDDEN  # not a URL: there is no telling what is what
        return f"{scheme}://{_after_scheme(scheme.lower(), rest)}"
    if text.startswith("//"):
        return f"//{_after_scheme('', text[2:])}"
    if "@" in _AUTHORITY.match(text).group():
        # An address without its scheme, `user:password@host/...`.
        return _after_scheme("", text)
    return _reference(text)


def _after_scheme(scheme: str, rest: str) -> str:
    """The authority (userinfo hidden), then the path, query and fragment."""
    start = _userinfo_end(scheme, rest)
    remainder = rest[start:]
    authority = _AUTHORITY.match(remainder).group()
    shown = (HIDDEN + "@" if start else "") + _hosts(authority)
    return shown + _reference(remainder[len(authority) :])


def _userinfo_end(scheme: str, rest: str) -> int:
    """Where the userinfo ends (after its `@`), 0 when there is none: the furthest either
    reading would take it to, so that neither reading's password is shown."""
    pattern = _HTTP_USERINFO if scheme in _HTTP_SCHEMES else _DRIVER_USERINFO
    driver = pattern.match(rest)
    end = max(_last_at(rest, 0), driver.end() if driver else 0)
    # What the driver's reading leaves may still hold an `@` before its path.
    return _last_at(rest, end)


def _last_at(rest: str, start: int) -> int:
    """Past the last `@` of the authority that starts at `start`, or `start` without one."""
    authority = _AUTHORITY.match(rest, start).group()
    return start + authority.rfind("@") + 1 if "@" in authority else start


def _hosts(authority: str) -> str:
    """`host:port`, or several separated by commas as libpq allows; a port that is not a number
    is hidden."""
    return ",".join(_host(item) for item in authority.split(","))


def _host(item: str) -> str:
    ipv6 = _IPV6_HOST.fullmatch(item)
    if ipv6:
        host, port = ipv6.group(1), ipv6.group(2)
    else:
        host, colon, port = item.partition(":")
        port = port if colon else None
    if port is None:
        return host
    return f"{host}:{port if _PORT.fullmatch(port) else HIDDEN}"


def _reference(text: str) -> str:
    """A path, then its query and fragment, each shown as the rules say."""
    before_fragment, hash_sign, _ = text.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    shown = _path(path)
    if question_mark:
        shown += "?" + _query(query)
    if hash_sign:
        shown += "#" + HIDDEN
    return shown


def _path(path: str) -> str:
    shown, after_secret_parent = [], False
    for segment in path.split("/"):
        decoded = unquote(segment, errors="replace")
        if segment and (after_secret_parent or len(decoded) >= TOKEN_LENGTH):
            shown.append(HIDDEN)
        else:
            shown.append(segment)
        after_secret_parent = after_secret_parent or decoded.lower() in _SECRET_PARENTS
    return "/".join(shown)


def _query(query: str) -> str:
    shown = []
    for part in _QUERY_SEPARATORS.split(query):
        if part in ("&", ";", ""):
            shown.append(part)
        elif "=" in part:
            key = part.split("=", 1)[0]
            shown.append(f"{key if _QUERY_KEY.fullmatch(key) else HIDDEN}={HIDDEN}")
        else:
            shown.append(HIDDEN)
    return "".join(shown)


def _conninfo(text: str) -> str:
    """libpq's `key=value ...`: the keys, and the values of the host and the port only."""
    shown, position = [], 0
    while position < len(text) and text[position:].strip():
        item = _CONNINFO_ITEM.match(text, position)
        if item is None or item.end() == position:
            shown.append(HIDDEN)  # unreadable from here: nothing more of it is shown
            break
        key, value = item.group(1), item.group(2)
        plain = key.lower() in _CONNINFO_SHOWN and _PLAIN_VALUE.fullmatch(value)
        shown.append(f"{key}={value if plain else HIDDEN}")
        position = item.end()
    return " ".join(shown)


class _HideUrls(logging.Filter):
    """Rewrites a record's message with its URLs and request targets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: logging reports it itself
            return True
        hidden = redact_urls_in(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_HIDE_URLS = _HideUrls()
# Every logger of urllib3 that names a URL: the requests it makes (debug), the retries (debug
# and warning), the redirects, the headers it could not parse.
URLLIB3_LOGGERS = (
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "urllib3.contrib.pyopenssl",
    "urllib3.contrib.emscripten.response",
    "urllib3.http2.connection",
)


def hide_urls_in_logs(names: tuple[str, ...] = URLLIB3_LOGGERS) -> None:
    """Make the loggers `names` show every URL as `redact_url` does. A filter on a logger sees
    the records made on that logger only, hence one per module of the library."""
    for name in names:
        logger = logging.getLogger(name)
        if _HIDE_URLS not in logger.filters:
            logger.addFilter(_HIDE_URLS)
