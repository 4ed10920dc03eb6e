"""Team sales by the month a sale was booked, finding agents by a short name, and the list of
agents: the report functions alone, over tiny sales DBs and the company's reference DB."""

import pytest

from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.sales import reports
from salesops_pipeline.sales.schema import open_sales_db


def _by_key(report):
    return {(r.team, r.status): (r.sessions, r.amount) for r in report.rows}


def _two_months(b):
    sales = b.team("sales")
    lea = b.agent("lea@example.com", sales)
    april, may = b.target(lea, "2025-04-30", 1000), b.target(lea, "2025-05-02", 1000)
    sold_in_april = b.session(lea, 900.0, "unsubscribed", "2025-06-01")
    b.operation(april, 900.0, sold_in_april)
    b.operation(may, -900.0, sold_in_april)  # unsubscribed in May, booked in April
    sold_in_may = b.session(lea, 400.0, "new", "2025-05-20")
    b.operation(may, 400.0, sold_in_may)
    b.session(lea, 50.0, "new", "2025-05-01")  # never booked on a target
    return b.close()


def test_a_sale_counts_in_the_month_it_was_booked(sales_db_builder):
    path = _two_months(sales_db_builder)
    with open_sales_db(path) as conn:
        april = reports.team_sales(conn, "2025-04")
        may = reports.team_sales(conn, "2025-05")
        june = reports.team_sales(conn, "2025-06")
        every = reports.team_sales(conn)
        unbooked = reports.unbooked_sessions(conn)
    assert _by_key(april) == {("sales", "unsubscribed"): (1, 900.0)}
    assert _by_key(may) == {("sales", "new"): (1, 400.0)}
    assert june.rows == () and june.teams == ("sales",)
    assert april.month == "2025-04" and every.month is None
    # The all-time view keeps every session, the unbooked one included.
    assert _by_key(every) == {("sales", "new"): (2, 450.0), ("sales", "unsubscribed"): (1, 900.0)}
    assert unbooked == 1


def test_the_months_of_the_reference_db_add_up_to_its_booked_sales(reference_db):
    with open_sales_db(reference_db) as conn:
        every = reports.team_sales(conn)
        april = reports.team_sales(conn, "2025-04")
        assert reports.unbooked_sessions(conn) == 0
    # Every session of the company's DB was booked in April 2025: the month is the whole.
    assert _by_key(april) == _by_key(every)


def test_a_malformed_month_is_refused(small_sales_db):
    with open_sales_db(small_sales_db) as conn, pytest.raises(InvalidInputError):
        reports.team_sales(conn, "2025-13")


@pytest.fixture
def agents_db(sales_db_builder):
    b = sales_db_builder
    sales, support = b.team("sales"), b.team("support")
    lea = b.agent("lea.martin@example.com", sales, support)
    b.agent("lea.martin@other.example", support)
    b.agent("martin.mougenot@walter-learning.com", sales)
    b.agent("paul@example.com")
    b.target(lea, "2025-04-03 10:00", 100)
    return b.close()


def _resolve(path, name):
    with open_sales_db(path) as conn:
        return reports.resolve_agent(conn, name, where=" in the test DB")


def test_a_full_username_resolves_to_itself(agents_db):
    assert _resolve(agents_db, "paul@example.com") == "paul@example.com"


@pytest.mark.parametrize("name", ["martin.mougenot", "Martin.Mougenot", "PAUL@example.com"])
def test_a_unique_short_name_resolves(agents_db, name):
    expected = "paul@example.com" if "@" in name else "martin.mougenot@walter-learning.com"
    assert _resolve(agents_db, name) == expected


def test_a_short_name_two_agents_share_asks_for_the_full_one(agents_db):
    with pytest.raises(InvalidInputError) as raised:
        _resolve(agents_db, "lea.martin")
    message = str(raised.value)
    assert "several agents in the test DB" in message
    assert "lea.martin@example.com" in message and "lea.martin@other.example" in message


def test_an_unknown_name_gets_the_closest_matches(agents_db):
    with pytest.raises(reports.UnknownAgentError) as raised:
        _resolve(agents_db, "martin.mougeno")
    assert raised.value.closest[0] == "martin.mougenot@walter-learning.com"
    assert str(raised.value).startswith("Unknown agent 'martin.mougeno' in the test DB")
    assert "salesops agents" in str(raised.value)


def test_a_name_like_nobody_says_so_without_guessing(agents_db):
    with pytest.raises(reports.UnknownAgentError) as raised:
        _resolve(agents_db, "zzzzzz")
    assert raised.value.closest == []
    assert "closest" not in str(raised.value)


def test_the_agents_list_names_teams_and_targets_of_the_month(agents_db):
    with open_sales_db(agents_db) as conn:
        april = reports.agent_listing(conn, "2025-04")
        may = reports.agent_listing(conn, "2025-05")
    assert [(a.username, a.teams, a.has_targets) for a in april] == [
        ("lea.martin@example.com", ("sales", "support"), True),
        ("lea.martin@other.example", ("support",), False),
        ("martin.mougenot@walter-learning.com", ("sales",), False),
        ("paul@example.com", (), False),
    ]
    assert not any(a.has_targets for a in may)


def test_the_reference_db_agents_resolve_by_short_name(reference_db):
    with open_sales_db(reference_db) as conn:
        assert (
            reports.resolve_agent(conn, "martin.mougenot") == "martin.mougenot@walter-learning.com"
        )
        listing = reports.agent_listing(conn, "2025-04")
    assert any(a.has_targets for a in listing)
