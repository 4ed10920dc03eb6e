"""The provider's webhook sender, as the multi-host suite and its benchmark need it: events
posted to the intakes in turn at a steady pace, each delivered again (to the other intake, after
the `Retry-After` it was given) until an intake acknowledges it, and every answer kept."""

import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from salesops_pipeline.post_call.lag import percentile as lag_percentile
from salesops_pipeline_tests.support.post_call_outcome import scenario

# How long the sender waits for an answer, as a provider's would; the intake answers sooner.
ANSWER_TIMEOUT = 20.0
# A delivery not acknowledged after this long fails the test.
DELIVERY_DEADLINE = 150.0


@dataclass(frozen=True)
class Answer:
    call_id: str
    intake: int
    status: int | None  # None: no answer (timeout, connection refused or reset)
    retry_after: str | None
    seconds: float
    at: float  # monotonic, when the answer came


@dataclass
class Sent:
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, float] = field(default_factory=dict)  # callId -> monotonic

    def by_status(self) -> dict[str, int]:
        return count_statuses(self.answers)

    def improper(self) -> list[Answer]:
        """Answers the contract forbids: anything but a 2xx, a 503 with Retry-After, or no
        answer at all."""
        return [
            a
            for a in self.answers
            if a.status is not None
            and a.status not in (200, 202)
            and not (a.status == 503 and a.retry_after)
        ]

    def unanswered(self) -> list[Answer]:
        """Deliveries that got no answer within the sender's timeout, or a connection error."""
        return [a for a in self.answers if a.status is None]

    def accept_seconds(self) -> list[float]:
        """How long each acknowledged delivery took to be answered."""
        return [a.seconds for a in self.answers if a.status in (200, 202)]


def scenario_events(
    contact_ids: list[str], tag: str, seed: int, *, pairs: int, transfers: int, others: int
) -> tuple[list[dict], dict, dict]:
    """The chaos suite's scenario (callback pairs, transfers, nothing to do), its callIds
    suffixed with `tag` so that several scenarios share one inbox; shuffled."""
    rng = random.Random(seed)
    events, expected_retry, transferred = scenario(
        contact_ids, rng, pairs=pairs, transfers=transfers, others=others
    )
    for event in events:
        event["callId"] = f"{event['callId']}-{tag}"
    transferred = {f"{call_id}-{tag}": contact for call_id, contact in transferred.items()}
    rng.shuffle(events)
    return events, expected_retry, transferred


def send(urls: list[str], key: str, events: list[dict], *, rate: float, senders: int = 8) -> Sent:
    """Post `events` at `rate` a second, alternately to each intake, until every one is
    acknowledged (2xx); returns every answer received."""
    sent = Sent()
    lock = threading.Lock()
    start = time.monotonic()

    def deliver(numbered: tuple[int, dict]) -> None:
        n, event = numbered
        due = start + n / rate
        time.sleep(max(0.0, due - time.monotonic()))
        body = json.dumps(event).encode()
        target = n % len(urls)
        session = requests.Session()
        session.headers.update({"X-API-KEY": key, "Content-Type": "application/json"})
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while True:
            began = time.monotonic()
            try:
                response = session.post(
                    f"{urls[target]}/webhooks/post-call", data=body, timeout=ANSWER_TIMEOUT
                )
                status, retry_after = response.status_code, response.headers.get("Retry-After")
            except requests.RequestException:
                status, retry_after = None, None
            now = time.monotonic()
            answer = Answer(event["callId"], target, status, retry_after, now - began, now)
            with lock:
                sent.answers.append(answer)
                if status in (200, 202):
                    sent.acknowledged[event["callId"]] = now
            if status is not None and status < 500:
                return
            assert now < deadline, f"{event['callId']} never acknowledged"
            # Not stored: delivered again later, to the other intake, as a provider (or the
            # load balancer in front of the intakes) would.
            wait = min(float(retry_after), 5.0) if retry_after and retry_after.isdigit() else 1.0
            time.sleep(wait)
            target = (target + 1) % len(urls)

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(deliver, enumerate(events)))
    return sent


def count_statuses(answers: list[Answer]) -> dict[str, int]:
    """How many of `answers` had each status ("no answer" for none)."""
    return dict(
        sorted(
            Counter(str(a.status) if a.status is not None else "no answer" for a in answers).items()
        )
    )


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank `q` quantile of `values`, as the inbox's own lag figures compute it;
    None when there are none."""
    return lag_percentile(sorted(values), q)
