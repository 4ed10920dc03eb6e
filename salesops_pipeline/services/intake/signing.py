"""Optional HMAC-SHA256 signatures on webhooks: `X-Signature` over `timestamp.body`."""

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"
# A signed request older (or newer) than this is refused: a captured one cannot be replayed.
TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers a sender adds, as the provider (or the simulator) would."""
    timestamp = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
) -> str | None:
    """Why a signature is not acceptable, or None when it is."""
    if not timestamp or not signature:
        return f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not a Unix timestamp"
    current = now if now is not None else time.time()
    if abs(current - sent_at) > TOLERANCE_SECONDS:
        return "stale signature timestamp"
    # Compared as bytes: a header with non-ASCII characters is a bad signature, not an error.
    if not hmac.compare_digest(
        sign(secret, timestamp, body).encode(), signature.encode("utf-8", "surrogateescape")
    ):
        return "bad signature"
    return None
