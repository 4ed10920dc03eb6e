"""A call centre in a box: posts realistic post-call events to the intake, at a steady rate.

For watching the automation in the Dagster UI and for loading it in benchmarks. Events are
about real contacts of the campaigns, signed the way the provider signs them when a webhook
secret is configured, and every request loop is bounded in count and time.
"""

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus

import requests

from salesops_pipeline.clients.wire import format_webhook_datetime
from salesops_pipeline.services.intake.signing import signature_headers
from salesops_pipeline.timezone import BUSINESS_TIMEZONE

OTHER_WRAPUPS = ("Vente", "Pas intéressé", "Messagerie", "Faux numéro")
AGENTS = (
    "anais.garnier@walter-learning.com",
    "martin.mougenot@walter-learning.com",
    "julie.dupont@walter-learning.com",
)


# The kinds of event the simulator posts, as the summary names them.
KIND_NAMES = (
    ("callback", "callback"),
    ("support", "support transfer"),
    ("other", "other outcome"),
)


def _counted(count: int, name: str) -> str:
    return f"{count} {name}" + ("" if count == 1 else "s")


def _status(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


@dataclass
class SimulationReport:
    """What a simulation posted and how the intake answered, counted as it goes."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    # Why the simulation stopped early, when the intake was unreachable or refused the key.
    aborted: str | None = None

    def latency(self) -> str:
        """The median and slowest answer so far."""
        latencies = sorted(self.latencies_ms) or [0.0]
        return f"p50 {latencies[len(latencies) // 2]:.1f} ms, max {latencies[-1]:.1f} ms"

    def summary(self) -> str:
        """What was sent and how the intake answered, as a small table an operator reads at a
        glance."""
        kinds = ", ".join(
            _counted(self.kinds[kind], name) for kind, name in KIND_NAMES if self.kinds[kind]
        )
        answers = ", ".join(
            f"{_status(status)}: {count}" for status, count in sorted(self.statuses.items())
        )
        errors = ", ".join(f"{name}: {count}" for name, count in sorted(self.errors.items()))
        rows = [
            ("Events sent", f"{self.sent}" + (f": {kinds}" if kinds else "")),
            ("Answers", answers or "none"),
            ("Errors", errors or "none"),
            ("Latency", self.latency()),
        ]
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def make_event(rng: random.Random, call_id: str, contact_id: str, now: datetime) -> dict:
    """One realistic event: a callback (dates before, on and after the call's day), a support
    transfer, or another outcome."""
    end = now - timedelta(seconds=rng.randint(0, 30))
    duration = rng.randint(20, 900)
    start = end - timedelta(seconds=duration)
    roll = rng.random()
    callback = None
    if roll < 0.45:
        kind, wrapup = "callback", rng.choice(("Rappel", "rappel", "RAPPEL"))
        callback = end + timedelta(
            days=rng.choice((-2, 0, 0, 1, 3, 7)),
            hours=rng.randint(-3, 5),
            minutes=rng.choice((0, 15, 30)),
        )
    elif roll < 0.65:
        kind, wrapup = "support", rng.choice(("support", "Transfert support", "SUPPORT technique"))
    else:
        kind, wrapup = "other", rng.choice(OTHER_WRAPUPS)
    return {
        "agent": rng.choice(AGENTS),
        "callDurationInSeconds": str(duration),
        "callBackDate": format_webhook_datetime(callback) if callback else None,
        "callEnd": format_webhook_datetime(end),
        "callId": call_id,
        "callResult": "CONNECTED",
        "callStart": format_webhook_datetime(start),
        "callType": "campaignOutboundCall",
        "campaignId": rng.choice(("A", "B")),
        "campaignName": "Campagne",
        "contactId": contact_id,
        "contactPhone": None,
        "conversationDuration": str(max(duration - 15, 0)),
        "displayedPhoneNumber": None,
        "wrapup": wrapup,
        "wrapupComment": None,
        "_kind": kind,
    }


def simulate(
    *,
    intake_url: str | None = None,
    intake_urls: Sequence[str] = (),
    api_key: str,
    contact_ids: list[str],
    rate: float,
    duration: float,
    webhook_secret: str | None = None,
    seed: int | None = None,
    max_events: int = 100_000,
    max_consecutive_failures: int = 5,
    on_progress: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    """Post `rate` events per second for `duration` seconds (at most `max_events`).

    Posts go to `intake_url`, or to each of `intake_urls` in turn, as a load balancer in front
    of several intake replicas would spread them. Stops early after `max_consecutive_failures`
    posts in a row that could not connect or were refused the key: posting on would only
    repeat the same failure for the whole duration. `on_progress`, when given, is handed the
    report so far after each answer (or failure).
    """
    if not contact_ids:
        raise ValueError("no contacts to call")
    bases = list(intake_urls) or ([intake_url] if intake_url else [])
    if not bases:
        raise ValueError("no intake to post to")
    urls = [base.rstrip("/") + "/webhooks/post-call" for base in bases]
    rng = random.Random(seed)
    run_token = f"{int(time.time())}{rng.randrange(1000):03d}"
    total = min(int(rate * duration), max_events)
    report = SimulationReport()
    session = requests.Session()
    session.headers.update({"X-API-KEY": api_key, "Content-Type": "application/json"})
    started = time.monotonic()
    failures_in_a_row = 0
    for n in range(total):
        # Paced on the clock, not on sleeps, so slow answers do not lower the rate.
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = make_event(
            rng, f"sim-{run_token}-{n}", rng.choice(contact_ids), datetime.now(BUSINESS_TIMEZONE)
        )
        report.kinds[event.pop("_kind")] += 1
        body = json.dumps(event).encode()
        headers = signature_headers(webhook_secret, body) if webhook_secret else {}
        sent_at = time.perf_counter()
        failure = None
        try:
            response = session.post(urls[n % len(urls)], data=body, headers=headers, timeout=10)
            report.statuses[response.status_code] += 1
            if response.status_code < 300:
                report.call_ids.append(event["callId"])
            elif response.status_code in (401, 403):
                failure = f"the intake refused the key ({response.status_code})"
        except requests.RequestException as error:
            report.errors[type(error).__name__] += 1
            failure = f"cannot reach the intake ({type(error).__name__})"
        report.latencies_ms.append((time.perf_counter() - sent_at) * 1000)
        report.sent += 1
        if on_progress is not None:
            on_progress(report)
        failures_in_a_row = failures_in_a_row + 1 if failure else 0
        if failures_in_a_row >= max_consecutive_failures:
            report.aborted = f"{failures_in_a_row} posts in a row failed: {failure}"
            break
    return report
