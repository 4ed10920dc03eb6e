"""Statistics: the backlog, the lag, the latency of finished events and the counts the
operators' tools show."""

from datetime import datetime

from salesops_pipeline.post_call.lag import RECENT, PostCallLag, percentile
from salesops_pipeline.post_call.status import OPEN_STATUSES, EventStatus, WriteState
from salesops_pipeline.post_call.store.base import StoreBase, _dicts, _iso, _now, _parse
from salesops_pipeline.post_call.store.schema import _OPEN_LITERALS

# Finished events, each with when it was stored and when it was done: its write confirmed by
# the provider, or else its outcome recorded.
# The open statuses are spelled out, as in the partial index `event_finished`, so that SQLite
# can use it: an index of finished events alone costs the intake nothing, since it stores
# events pending.
_FINISHED = f"""SELECT e.call_id, e.received_at,
                      CASE WHEN w.state = ? THEN w.updated_at ELSE e.updated_at END
               FROM event e LEFT JOIN write w ON w.call_id = e.call_id
               WHERE e.status NOT IN ({_OPEN_LITERALS})"""
_FINISHED_PARAMS = (WriteState.APPLIED,)


def _latency(received: str, done: str) -> float:
    return max((_parse(done) - _parse(received)).total_seconds(), 0.0)


class Statistics(StoreBase):
    def lag(self, now: datetime | None = None) -> PostCallLag:
        """The backlog, the lag and the recent latency (see `post_call.lag`)."""
        now = now or _now()
        since = _iso(now - RECENT)
        with self.connect() as conn:
            waiting = {
                status: (count, oldest)
                for status, count, oldest in conn.execute(
                    "SELECT status, COUNT(*), MIN(received_at) FROM event"
                    " WHERE status IN (?, ?) GROUP BY status",
                    OPEN_STATUSES,
                )
            }
            [(failed,)] = conn.execute(
                "SELECT COUNT(*) FROM event WHERE status = ?", (EventStatus.FAILED,)
            ).fetchall()
            finished = conn.execute(
                f"{_FINISHED} AND e.updated_at >= ?", (*_FINISHED_PARAMS, since)
            ).fetchall()
        oldest = min((first for _, first in waiting.values()), default=None)
        latencies = sorted(
            _latency(received, done) for _, received, done in finished if done >= since
        )
        return PostCallLag(
            pending=waiting.get(EventStatus.PENDING, (0, None))[0],
            retrying=waiting.get(EventStatus.RETRYING, (0, None))[0],
            failed=failed,
            oldest_pending_age_s=(
                None if oldest is None else max((now - _parse(oldest)).total_seconds(), 0.0)
            ),
            finished_last_5m=len(latencies),
            latency_p50_s=percentile(latencies, 0.50),
            latency_p95_s=percentile(latencies, 0.95),
            latency_max_s=latencies[-1] if latencies else None,
        )

    def latencies(self, call_ids: list[str]) -> list[float]:
        """The latency of each of these events that has finished, in seconds, sorted."""
        with self.connect() as conn:
            rows = [
                row
                for chunk in range(0, len(call_ids), 500)
                for row in conn.execute(
                    f"{_FINISHED} AND e.call_id IN"
                    f" ({', '.join('?' * len(call_ids[chunk : chunk + 500]))})",
                    (*_FINISHED_PARAMS, *call_ids[chunk : chunk + 500]),
                )
            ]
        return sorted(_latency(received, done) for _, received, done in rows)

    def counts(self) -> dict[str, int]:
        """Events in the inbox per status, from the counts the triggers keep: a few rows,
        however long the history."""
        with self.connect() as conn:
            return dict(
                conn.execute(
                    "SELECT status, CAST(SUM(events) AS BIGINT) FROM status_count"
                    " GROUP BY status HAVING SUM(events) > 0"
                )
            )

    def entered_totals(self) -> dict[str, int]:
        """How many times an event entered each status since the inbox began: stored
        (`pending`), handed back for a retry, or finished each way. Totals that only grow, for
        counters: a failed event replayed still failed once, and pruning forgets events, not
        what they did."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT status, CAST(SUM(entered) AS BIGINT) FROM status_count GROUP BY status"
            ).fetchall()
        return {status: total for status, total in rows if total > 0}

    def quarantined(self) -> list[dict]:
        with self.connect() as conn:
            rows = _dicts(conn.execute("SELECT * FROM quarantine ORDER BY id"))
        return [row | {"raw_body": bytes(row["raw_body"])} for row in rows]

    def conflicts(self) -> list[dict]:
        with self.connect() as conn:
            return _dicts(conn.execute("SELECT * FROM conflict ORDER BY id"))
