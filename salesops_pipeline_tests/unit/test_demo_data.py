"""The generated demo sales DB: the company's schema, deterministic, and the awkward cases."""

import hashlib
import sqlite3

import pytest

from salesops_pipeline.sales.demo import generate_demo_db
from salesops_pipeline.sales.schema import open_sales_db


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    return generate_demo_db(tmp_path_factory.mktemp("demo") / "sales.sqlite", sessions=4000)


def _content_digest(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def _scalar(path, sql):
    with open_sales_db(path) as conn:
        return conn.execute(sql).fetchone()[0]


def test_same_seed_same_content(tmp_path, demo_db):
    again = generate_demo_db(tmp_path / "again.sqlite", sessions=4000)
    assert _content_digest(again) == _content_digest(demo_db)
    other = generate_demo_db(tmp_path / "other.sqlite", sessions=4000, seed=7)
    assert _content_digest(other) != _content_digest(demo_db)


def test_same_tables_and_columns_as_the_company_db(demo_db, reference_db):
    def columns(path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {t: [c[1:3] for c in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}
        finally:
            conn.close()

    assert columns(demo_db) == columns(reference_db)


def test_size_knob_gives_sessions_and_at_least_as_many_target_operations(demo_db):
    assert _scalar(demo_db, "SELECT COUNT(*) FROM session") == 4000
    # At any size there are more booked operations than sales (refunds are booked too), so
    # the knob set to 1M reaches 1M of each.
    assert _scalar(demo_db, "SELECT COUNT(*) FROM target_operation") >= 4000


def test_agents_in_several_teams(demo_db):
    assert (
        _scalar(
            demo_db,
            "SELECT COUNT(*) FROM (SELECT agent_id FROM agent_team"
            " GROUP BY agent_id HAVING COUNT(*) > 1)",
        )
        >= 2
    )


def test_unsubscriptions_are_booked_negative_on_a_later_day(demo_db):
    later = _scalar(
        demo_db,
        """
        SELECT COUNT(*) FROM target_operation refund
        JOIN target refund_day ON refund_day.id = refund.target_id
        JOIN target_operation sale ON sale.session_id = refund.session_id AND sale.amount > 0
        JOIN target sale_day ON sale_day.id = sale.target_id
        JOIN session ON session.id = refund.session_id
        WHERE refund.amount < 0 AND refund_day.date > sale_day.date
          AND session.status = 'unsubscribed'
        """,
    )
    assert later > 0


def test_days_without_sales_and_days_with_target_zero(demo_db):
    assert _scalar(demo_db, "SELECT COUNT(*) FROM target WHERE amount = 0") > 0
    days_with_sales = _scalar(demo_db, "SELECT COUNT(DISTINCT starting_date) FROM session")
    calendar_days = _scalar(demo_db, "SELECT COUNT(DISTINCT date) FROM target")
    assert days_with_sales < calendar_days


def test_an_agent_without_targets(demo_db):
    assert (
        _scalar(demo_db, "SELECT COUNT(*) FROM agent WHERE id NOT IN (SELECT owner_id FROM target)")
        >= 1
    )


def test_statuses_beyond_new_and_unsubscribed(demo_db):
    with open_sales_db(demo_db) as conn:
        statuses = {s for (s,) in conn.execute("SELECT DISTINCT status FROM session")}
    assert {"new", "unsubscribed"} < statuses


def test_interrupted_build_leaves_no_file(tmp_path, monkeypatch):
    from salesops_pipeline.sales import demo

    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_fill", crash)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        generate_demo_db(out / "sales.sqlite", sessions=10)
    assert list(out.iterdir()) == []
