"""Links to a month's progression chart that a browser opens without the frontend API's key.

The Dagster UI shows the chart on the progression's asset page as an image served by the
frontend API, and a browser cannot send a key with an image. The link carries instead a
signature of its month, made with a key of its own (the link key): it opens that month's chart
and nothing else, and a new link key revokes every link. Dagster holds the link key alone, never
the API key, so what signs links cannot post webhooks.
"""

import hashlib
import hmac
from urllib.parse import urlencode

CHART_PATH = "/api/progression/chart"
_LINK_KEY_PURPOSE = b"salesops progression chart links"
_SIGNED_PREFIX = b"month\0"


def link_key_from(api_key: str) -> str:
    """The link key that goes with an API key, when none is set apart."""
    return hmac.new(api_key.encode(), _LINK_KEY_PURPOSE, hashlib.sha256).hexdigest()


def signature(link_key: str, month: str) -> str:
    digest = hmac.new(link_key.encode(), _SIGNED_PREFIX + month.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def valid(link_key: str, month: str, given: str) -> bool:
    return hmac.compare_digest(signature(link_key, month).encode(), given.encode())


def chart_link(base_url: str, link_key: str, month: str) -> str:
    """The chart of `month`, from the frontend API reachable at `base_url`."""
    query = urlencode({"month": month, "signature": signature(link_key, month)})
    return f"{base_url.rstrip('/')}{CHART_PATH}?{query}"
