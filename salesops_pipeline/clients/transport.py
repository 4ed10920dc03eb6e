"""HTTP to the provider: one session, a timeout on every call, retries with backoff.

429 and 5xx are retried with exponential backoff, honouring `Retry-After`; other 4xx are not
retried and become typed errors. Lists that the provider pages are followed through their
RFC 8288 `Link: <...>; rel="next"` headers.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.util.retry import Retry

from salesops_pipeline.clients.errors import (
    ApiAuthError,
    ApiNotFoundError,
    ApiRequestError,
    ApiUnavailableError,
    ApiWriteNotApplied,
    ApiWriteUnknown,
)
from salesops_pipeline.redaction import hide_urls_in_logs, redact_url, redact_urls_in

# urllib3 names the URLs it requests and retries in its log lines: a provider's or a chat's
# URL may carry a secret (a webhook's token, a key in the query), so they show redacted.
hide_urls_in_logs()

# (connect, read) seconds: connecting is quick or broken; a large page may take a while.
DEFAULT_TIMEOUT = (3.05, 30.0)

RETRY_STATUSES = (429, 500, 502, 503, 504)
# Answered by a gateway in front of the provider, not by the provider itself.
GATEWAY_STATUSES = (502, 504)

# A provider asking us to come back in an hour should fail the call, not hang the run.
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_REDIRECTS = 5
# 10M contacts at the provider's smallest page size; more means its paging is broken.
MAX_PAGES = 10_000
MAX_EMPTY_PAGES = 3
# Bytes read from the wire at a time when a page is saved to disk.
_CHUNK_BYTES = 1 << 20


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: whole or fractional seconds, or an HTTP date. Anything else is
    None, so that the caller falls back to its own backoff instead of failing."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    return max(0.0, seconds)


class CappedRetry(Retry):
    """urllib3's Retry, reading the server's Retry-After tolerantly and honouring it up to a
    ceiling."""

    def parse_retry_after(self, retry_after: str) -> float:
        seconds = parse_retry_after(retry_after)
        # Unreadable: the backoff applies, as if the header were absent.
        return 0.0 if seconds is None else min(seconds, MAX_RETRY_AFTER_SECONDS)

    def get_retry_after(self, response):
        retry_after = super().get_retry_after(response)
        return None if retry_after is None else min(retry_after, MAX_RETRY_AFTER_SECONDS)


def default_retry(total: int = 5, backoff_factor: float = 0.5) -> Retry:
    """For reads. Writes never go through it: see `ApiTransport.write`."""
    return CappedRetry(
        total=total,
        connect=2,
        read=2,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def write_retry() -> Retry:
    """Only a connection that could not be opened is tried again: the write was not sent."""
    return Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)


# Answers to a write that say it was not applied, so that it may be sent again.
NOT_APPLIED_STATUSES = (429, 503)


class ApiTransport:
    """Authenticated HTTP to one provider host; every request carries `X-API-KEY`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
        retry: Retry | None = None,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not echoed whole: the value may carry a user and a password.
            raise ApiRequestError(
                "configuration",
                f"the API host must be a URL like https://host, not {redact_url(base_url)!r}",
            )
        self.base_url = base_url.rstrip("/") + "/"
        # The key goes to this origin only: links and redirects elsewhere are refused.
        self.origin = _origin(self.base_url)
        self.timeout = timeout
        self.session = _session(api_key, retry or default_retry())
        self.write_session = _session(api_key, write_retry())

    @property
    def write_deadline_seconds(self) -> float:
        """The longest this client waits on a write: connecting, then the answer. A provider
        that took the request may still apply it until then (and a gateway's upstream too)."""
        if isinstance(self.timeout, tuple):
            return float(self.timeout[0]) + float(self.timeout[1])
        # requests applies a single figure to the connection and to the answer each.
        return 2 * float(self.timeout)

    def close(self) -> None:
        self.session.close()
        self.write_session.close()

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json: dict | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One read, retried as `default_retry` says. Redirects are followed within the
        provider's origin only: the key must never reach another host, nor plain HTTP.

        With `stream`, the body is left on the wire for `save_body` to read."""
        call = f"{method} {urlsplit(url).path}"
        self._check_origin(call, url, "the provider's URL")
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                timeout=self.timeout,
                allow_redirects=False,
                stream=stream,
            )
            for _ in range(MAX_REDIRECTS):
                if not (response.is_redirect and response.headers.get("Location")):
                    break
                url = urljoin(response.url, response.headers["Location"])
                self._check_origin(call, url, "a redirect")
                response.close()
                response = self.session.request(
                    "GET", url, timeout=self.timeout, allow_redirects=False, stream=stream
                )
        except requests.exceptions.Timeout:
            raise ApiUnavailableError(call, f"no answer within {self._read_timeout()}s") from None
        except requests.exceptions.RetryError as error:
            # urllib3's message quotes the URL, query and all.
            raise ApiUnavailableError(
                call, f"still failing after retries ({redact_urls_in(error)})"
            ) from None
        except requests.exceptions.ConnectionError as error:
            cause = _root_cause(error)
            if "timed out" in cause:
                # Read timeouts that outlast the retries surface as connection errors.
                raise ApiUnavailableError(
                    call, f"no answer within {self._read_timeout()}s"
                ) from None
            raise ApiUnavailableError(call, f"cannot reach {redact_url(url)} ({cause})") from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as error:
            # The answer broke on its way: a network fault, worth another try later.
            raise ApiUnavailableError(
                call, f"the answer broke off ({type(error).__name__})"
            ) from None
        except requests.exceptions.RequestException as error:
            raise ApiRequestError(call, type(error).__name__) from None
        _raise_for_status(call, response)
        return response

    def _check_origin(self, call: str, url: str, what: str) -> None:
        if _origin(url) != self.origin:
            raise ApiRequestError(
                call,
                f"{what} points to {redact_url(url)}, not the provider"
                f" ({redact_url(self.base_url)}): refused, the key goes to the provider only",
            )

    def write(
        self, method: str, url: str, *, json: dict, headers: dict | None = None
    ) -> requests.Response:
        """Send a write once, and say exactly what is known of its fate.

        Never re-sent by the HTTP layer and redirects are never followed: a redirected PATCH
        would become a GET and look applied. A 2xx is returned; a 3xx, 429 or 503 raises
        ApiWriteNotApplied; a lost answer or a server error raises ApiWriteUnknown; other
        4xx raise the usual typed errors.
        """
        call = f"{method} {urlsplit(url).path}"
        try:
            response = self.write_session.request(
                method,
                url,
                json=json,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ApiWriteNotApplied(call, "could not connect in time: not sent") from None
        except requests.exceptions.Timeout:
            raise ApiWriteUnknown(
                call, f"no answer within {self._read_timeout()}s", may_still_land=True
            ) from None
        except requests.exceptions.ConnectionError as error:
            cause = _root_cause(error)
            if _never_sent(error):
                raise ApiWriteNotApplied(call, f"cannot reach the provider ({cause})") from None
            # The request went out: the provider may still be working on it.
            raise ApiWriteUnknown(
                call, f"connection lost before the answer ({cause})", may_still_land=True
            ) from None
        except requests.exceptions.RequestException as error:
            # ChunkedEncodingError, ContentDecodingError: the answer broke on its way.
            raise ApiWriteUnknown(call, f"the answer broke off ({type(error).__name__})") from None
        status = response.status_code
        if 300 <= status < 400:
            raise ApiWriteNotApplied(
                call,
                f"{status} redirect to {redact_url(response.headers.get('Location', '?'))}"
                " not followed",
                status=status,
            )
        if status in NOT_APPLIED_STATUSES:
            raise ApiWriteNotApplied(
                call,
                f"{status} {_detail(response)}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            # A gateway that gave up (502, 504) says nothing of its upstream, which may still
            # apply the write.
            raise ApiWriteUnknown(
                call,
                f"{status} {_detail(response)}",
                status=status,
                may_still_land=status in GATEWAY_STATUSES,
            )
        _raise_for_status(call, response)
        return response

    def iter_pages(self, path: str, *, params: dict | None = None) -> Iterator[requests.Response]:
        """Every page of a list, in memory: the first from `path`, then each `rel="next"` link."""
        yield from self._follow_pages(path, params, self._page_in_memory)

    def download_pages(
        self, path: str, directory: Path, *, params: dict | None = None
    ) -> Iterator[Path]:
        """Every page of a list, each streamed to its own file of `directory` as it arrives.

        Memory holds a chunk of a page, never a page: a provider that answers a million
        contacts as one unpaged list costs no more memory than one that pages them.
        """
        directory.mkdir(parents=True, exist_ok=True)
        pages = iter(range(1, MAX_PAGES + 1))

        def fetch(url: str, query: dict | None) -> tuple[requests.Response, Path, bool]:
            response = self.request("GET", url, params=query, stream=True)
            target = directory / f"page-{next(pages):06d}.json"
            self.save_body(response, target)
            empty = target.stat().st_size <= 64 and _is_empty_list(target.read_bytes())
            return response, target, empty

        yield from self._follow_pages(path, params, fetch)

    def save_body(self, response: requests.Response, target: Path) -> None:
        """Write a streamed answer's body to `target`; a body that breaks off on the way is
        the provider being unavailable, like a request that never got an answer."""
        call = f"{response.request.method} {urlsplit(response.url).path}"
        try:
            with response, open(target, "wb") as out:
                for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                    out.write(chunk)
        except requests.exceptions.RequestException as error:
            target.unlink(missing_ok=True)
            raise ApiUnavailableError(
                call, f"the answer broke off ({_root_cause(error) or type(error).__name__})"
            ) from None

    def _page_in_memory(
        self, url: str, query: dict | None
    ) -> tuple[requests.Response, requests.Response, bool]:
        response = self.request("GET", url, params=query)
        return response, response, _is_empty_list(response.content)

    def _follow_pages(self, path: str, params: dict | None, fetch: Callable) -> Iterator:
        """Follow a list's `rel="next"` links, yielding what `fetch` makes of each page.

        Bounded whatever the provider answers: a link back to a page already read is a loop,
        at most MAX_PAGES pages are read, and MAX_EMPTY_PAGES empty pages in a row end it.
        """
        url: str | None = self.url(path)
        seen: set[str] = set()
        empty_in_a_row = 0
        for _ in range(MAX_PAGES):
            response, page, empty = fetch(url, params)
            seen.add(response.url)
            yield page
            empty_in_a_row = empty_in_a_row + 1 if empty else 0
            next_link = response.links.get("next", {}).get("url")
            if not next_link or empty_in_a_row >= MAX_EMPTY_PAGES:
                return
            params = None  # the next link carries its own query
            url = urljoin(response.url, next_link)
            if url in seen:
                raise ApiRequestError(
                    f"GET {urlsplit(url).path}", "the provider's next link goes in a loop"
                )
        raise ApiRequestError(
            f"GET /{path.lstrip('/')}", f"more than {MAX_PAGES} pages: the provider's paging is off"
        )

    def _read_timeout(self) -> float:
        return self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout


_END = object()

Item = TypeVar("Item")


def prefetched(items: Iterator[Item], ahead: int = 1) -> Iterator[Item]:
    """Yield from `items`, getting up to `ahead` next ones in a background thread meanwhile.

    For paged lists: the next pages travel while the caller handles the current one. Only one
    thread advances `items`, in order; when the caller stops early, the items not yet started
    are never fetched.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = deque(pool.submit(next, items, _END) for _ in range(ahead))
        try:
            while True:
                item = pending.popleft().result()
                if item is _END:
                    return
                pending.append(pool.submit(next, items, _END))
                yield item
        finally:
            for future in pending:
                future.cancel()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1  # unreadable: never the provider's
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port or default


def _is_empty_list(raw: bytes) -> bool:
    return raw.strip() in (b"[]", b"")


def _session(api_key: str, retry: Retry) -> requests.Session:
    session = requests.Session()
    session.headers.update({"X-API-KEY": api_key, "Accept": "application/json"})
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _never_sent(error: BaseException) -> bool:
    """Whether a connection error happened before the request left: no connection was made."""
    while error is not None:
        if isinstance(error, (NewConnectionError, ConnectionRefusedError)):
            return True
        error = error.__cause__ or error.__context__ or getattr(error, "reason", None)
        if isinstance(error, str):
            return False
    return False


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = redact_urls_in(error)
    if "Connection refused" in text or isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return text.split(": ", 1)[-1] or type(error).__name__


def _raise_for_status(call: str, response: requests.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _detail(response)
    if status in (401, 403):
        raise ApiAuthError(call, f"{status} {detail} (check REMOTE_API_KEY)", status=status)
    if status == 404:
        raise ApiNotFoundError(call, f"404 {detail}", status=status)
    if status in RETRY_STATUSES:
        raise ApiUnavailableError(call, f"{status} {detail}, still after retries", status=status)
    raise ApiRequestError(call, f"{status} {detail}", status=status)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "error"
    if isinstance(body, dict) and body.get("detail"):
        return f"{response.reason}: {str(body['detail'])[:200]}"
    return response.reason or "error"
