"""Post-call seen from outside Dagster: events posted to an intake with no pipeline running show
as pending with a growing lag, in `salesops inbox --stats` and in the intake's `/metrics`
(Prometheus text). `/metrics` takes its own token as `Authorization: Bearer` and nothing else:
the webhook key cannot scrape, the metrics token cannot post nor read the frontend API, and
without a token `/metrics` answers 404. A refused scrape is logged as one, never with the
token. Its counters never go down, through replays and pruning; the events in each status now
are a gauge."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from salesops_pipeline import settings
from salesops_pipeline.cli import main
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.services.http_server import serving_in_thread
from salesops_pipeline.services.intake.app import create_intake_app
from salesops_pipeline.services.intake.metrics import INBOX_READ_MAX_AGE_SECONDS

KEY = "webhook-key-0123456789"
TOKEN = "metrics-token-9876543210"


@pytest.fixture
def inbox(isolated_home):
    return Inbox(settings.inbox_path())


@pytest.fixture
def intake(inbox):
    with serving_in_thread(create_intake_app(inbox, api_key=KEY, metrics_token=TOKEN)) as url:
        yield url


def _post(url: str, call_id: str, key: str = KEY) -> int:
    return requests.post(
        f"{url}/webhooks/post-call",
        json={"callId": call_id, "contactId": f"contact-{call_id}", "wrapup": "Vente"},
        headers={"X-API-KEY": key},
        timeout=5,
    ).status_code


def _metrics(url: str, **headers) -> dict[tuple[str, tuple], float]:
    headers = headers or {"Authorization": f"Bearer {TOKEN}"}
    response = requests.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _stats(capsys) -> dict:
    capsys.readouterr()
    assert main(["inbox", "--stats", "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_events_wait_with_no_pipeline_running_and_every_view_says_so(intake, capsys):
    assert [_post(intake, f"stats-{n}") for n in range(3)] == [202] * 3
    assert _post(intake, "refused", key="wrong") == 401
    first, scraped = _stats(capsys), _metrics(intake)
    time.sleep(1.2)
    later, rescraped = _stats(capsys), _metrics(intake)

    assert (first["pending"], first["retrying"], first["failed"]) == (3, 0, 0)
    assert first["finished_last_5m"] == 0 and first["latency_p95_s"] is None
    assert later["oldest_pending_age_s"] >= first["oldest_pending_age_s"] + 1.0
    capsys.readouterr()
    assert main(["inbox", "--stats"]) == 0
    assert "Backlog: 3 pending, 0 retrying" in capsys.readouterr().out

    assert scraped[("salesops_post_call_backlog", (("status", "pending"),))] == 3
    assert scraped[("salesops_post_call_backlog", (("status", "retrying"),))] == 0
    oldest = "salesops_post_call_oldest_pending_seconds", ()
    assert rescraped[oldest] >= scraped[oldest] + 1.0
    assert abs(rescraped[oldest] - later["oldest_pending_age_s"]) < 1.0
    assert scraped[("salesops_intake_requests_total", (("code", "202"),))] == 3
    assert scraped[("salesops_intake_requests_total", (("code", "401"),))] == 1
    assert scraped[("salesops_post_call_events_total", (("status", "applied"),))] == 0
    # Nothing finished: no latency to give.
    assert not [name for name, _ in scraped if name == "salesops_post_call_latency_seconds"]


@pytest.mark.parametrize(
    ("headers", "logged"),
    [
        ({}, "metrics refused: no token"),
        ({"Authorization": "Bearer"}, "metrics refused: no token"),
        ({"Authorization": f"Basic {TOKEN}"}, "metrics refused: no token"),
        ({"X-API-KEY": TOKEN}, "metrics refused: no token (X-API-KEY is not accepted here"),
        # The webhook key, however it is sent, does not scrape.
        ({"X-API-KEY": KEY}, "metrics refused: no token (X-API-KEY is not accepted here"),
        ({"Authorization": f"Bearer {KEY}"}, "metrics refused: wrong token (the webhook key"),
        ({"Authorization": "Bearer wrong"}, "metrics refused: wrong token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "metrics refused: wrong token"),
    ],
)
def test_metrics_need_the_metrics_token(intake, caplog, headers, logged):
    caplog.set_level(logging.DEBUG, logger="salesops.intake")
    response = requests.get(f"{intake}/metrics", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert KEY not in response.text and TOKEN not in response.text
    assert logged in caplog.text
    assert "post-call refused" not in caplog.text
    assert KEY not in caplog.text and TOKEN not in caplog.text


def test_the_token_comes_as_a_bearer_token(intake):
    assert _metrics(intake, Authorization=f"Bearer {TOKEN}")
    assert _metrics(intake, Authorization=f"bearer {TOKEN}")
    assert _metrics(intake, Authorization=f"Bearer  {TOKEN} ")


@pytest.mark.parametrize(
    "headers", [{"X-API-KEY": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}], ids=["key", "bearer"]
)
def test_the_metrics_token_cannot_post_nor_read_the_frontend_api(intake, inbox, headers):
    posted = requests.post(
        f"{intake}/webhooks/post-call",
        json={"callId": "by-scraper", "contactId": "k", "wrapup": "Vente"},
        headers=headers,
        timeout=5,
    )
    assert posted.status_code == 401
    assert inbox.counts() == {}
    assert requests.get(f"{intake}/api/team-sales", headers=headers, timeout=5).status_code == 401


def test_without_a_token_metrics_answer_404(inbox, caplog):
    caplog.set_level(logging.INFO, logger="salesops.intake")
    with serving_in_thread(create_intake_app(inbox, api_key=KEY)) as url:
        for headers in ({}, {"X-API-KEY": KEY}, {"Authorization": f"Bearer {KEY}"}):
            response = requests.get(f"{url}/metrics", headers=headers, timeout=5)
            assert response.status_code == 404
            assert "salesops_" not in response.text
        # The webhooks work as ever.
        assert _post(url, "no-metrics") == 202
    assert caplog.text.count("metrics off") == 1  # said once, not at every scrape


def test_the_metrics_token_must_differ_from_the_webhook_key(inbox):
    with pytest.raises(ValueError, match="must differ"):
        create_intake_app(inbox, api_key=KEY, metrics_token=KEY)


def test_serve_refuses_a_metrics_token_equal_to_the_key(monkeypatch, capsys):
    monkeypatch.setenv("X_API_KEY", KEY)
    monkeypatch.setenv("SALESOPS_METRICS_TOKEN", KEY)
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "SALESOPS_METRICS_TOKEN must differ from X_API_KEY" in err and KEY not in err


def _finish(inbox: Inbox, call_id: str, status: str, seconds: float) -> None:
    with inbox.transaction() as conn:
        [(received,)] = conn.execute("SELECT received_at FROM event WHERE call_id = ?", (call_id,))
        done = datetime.fromisoformat(received) + timedelta(seconds=seconds)
        conn.execute(
            "UPDATE event SET status = ?, updated_at = ? WHERE call_id = ?",
            (status, done.astimezone(UTC).isoformat(timespec="milliseconds"), call_id),
        )


def test_finished_events_give_totals_and_latency(intake, inbox):
    for n in range(4):
        assert _post(intake, f"done-{n}") == 202
    for n, seconds in enumerate([0.5, 1.0, 2.0]):
        _finish(inbox, f"done-{n}", "applied", seconds)
    _finish(inbox, "done-3", "failed", 0.1)
    scraped = _metrics(intake)
    assert scraped[("salesops_post_call_events_total", (("status", "applied"),))] == 3
    assert scraped[("salesops_post_call_events_total", (("status", "failed"),))] == 1
    assert scraped[("salesops_post_call_backlog", (("status", "pending"),))] == 0
    assert scraped[("salesops_post_call_oldest_pending_seconds", ())] == 0
    # Nearest rank over the 4 finished events: 0.1, 0.5, 1.0, 2.0.
    assert scraped[("salesops_post_call_latency_seconds", (("quantile", "0.5"),))] == 0.5
    assert scraped[("salesops_post_call_latency_seconds", (("quantile", "0.95"),))] == 2.0
    assert scraped[("salesops_post_call_finished_last_5m", ())] == 4


def test_scrapes_read_the_inbox_at_most_once_a_second(intake, inbox, monkeypatch):
    reads = []
    original = Inbox.lag
    monkeypatch.setattr(Inbox, "lag", lambda self, *a: reads.append(1) or original(self, *a))
    for _ in range(20):
        _metrics(intake)
    assert len(reads) <= 2
    time.sleep(1.1)
    _metrics(intake)
    assert len(reads) >= 1 and len(reads) <= 3


def _series(scraped: dict, name: str) -> dict[str, float]:
    return {dict(labels)["status"]: value for (n, labels), value in scraped.items() if n == name}


def _rescrape(url: str) -> dict:
    # The inbox is read at most once a second, however often Prometheus scrapes.
    time.sleep(INBOX_READ_MAX_AGE_SECONDS + 0.1)
    return _metrics(url)


def _never_lower(before: dict, after: dict) -> None:
    totals = [name for name, _ in before if name.endswith("_total")]
    assert totals
    for key, value in before.items():
        if key[0] in totals:
            assert after[key] >= value, key


def test_counters_never_go_down_through_a_replay_or_pruning(intake, inbox):
    for n in range(3):
        assert _post(intake, f"fails-{n}") == 202
        _finish(inbox, f"fails-{n}", "failed", 0.5)
    assert _post(intake, "done") == 202
    _finish(inbox, "done", "applied", 0.5)
    before = _metrics(intake)
    totals = _series(before, "salesops_post_call_events_total")
    assert totals == {
        "pending": 4,
        "retrying": 0,
        "applied": 1,
        "nothing_to_do": 0,
        "superseded": 0,
        "failed": 3,
        "dismissed": 0,
    }
    assert _series(before, "salesops_post_call_inbox_events") == totals | {"pending": 0}

    # Two of the failed events replayed: `failed` now holds one, but three did fail.
    assert inbox.replay("fails-0") and inbox.replay("fails-1")
    replayed = _rescrape(intake)
    _never_lower(before, replayed)
    assert _series(replayed, "salesops_post_call_events_total")["failed"] == 3
    assert _series(replayed, "salesops_post_call_events_total")["retrying"] == 2
    now = _series(replayed, "salesops_post_call_inbox_events")
    assert (now["failed"], now["retrying"], now["applied"]) == (1, 2, 1)

    # Retention prunes the applied event (failed ones wait for a person): gone from the gauge,
    # still counted.
    pruned = inbox.prune(timedelta(days=1), now=datetime.now(UTC) + timedelta(days=2))
    assert pruned.rows["event"] == 1
    after = _rescrape(intake)
    _never_lower(replayed, after)
    assert _series(after, "salesops_post_call_events_total")["applied"] == 1
    assert _series(after, "salesops_post_call_inbox_events")["applied"] == 0
    assert sum(_series(after, "salesops_post_call_inbox_events").values()) == 3
