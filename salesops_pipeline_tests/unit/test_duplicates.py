"""Q1.1 and Q1.2 over contacts in DuckDB: formats, repeats, never-called and invalid numbers,
and the exact text and JSON the CLI prints."""

import json
from datetime import datetime

import duckdb
import pytest

from salesops_pipeline.campaigns import contacts as contacts_table
from salesops_pipeline.campaigns import duplicates as dup
from salesops_pipeline_tests.support.contacts import load_records
from salesops_pipeline_tests.support.contacts import record as _contact


@pytest.fixture
def conn():
    connection = duckdb.connect()
    contacts_table.reset_contacts(connection)
    yield connection
    connection.close()


def _load(conn, a, b, names=("A", "B")):
    load_records(conn, [(names[0], a), (names[1], b)])
    return dup.find_duplicates(conn)


def test_table_normalisation_gives_phonenumbers_answer(conn):
    """The in-database reading of numbers agrees with phonenumbers on every shape: the E.164
    form of every possible number, and its validity."""
    import random

    from salesops_pipeline_tests.support.phones import read_phone_slow

    rng = random.Random(11)
    shapes = (
        lambda n: f"0{n}",
        lambda n: f"+33{n}",
        lambda n: f"0033{n}",
        lambda n: f"0{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:]}",
        lambda n: f"+33 (0){n}",
        lambda n: f"+44 20 {n[:4]} {n[4:8]}",
        lambda n: f"0{n[:-2]}",
        lambda n: f"0{n[0]}\u00a0{n[1:]}",
        lambda n: f"06-{n[1:3]}-{n[3:5]}-{n[5:7]}-{n[7:]}",
        lambda n: f"07 0{n[2]} {n[3:5]} {n[5:7]} {n[7:]} {n[1]}",
        lambda n: f"+33 7 0{n[2]}{n[3:]}",
        lambda n: f"+1 {n}",
        lambda n: f"00 49 {n}",
        lambda n: f"0{n[0]}\t{n[1:5]}\t{n[5:]}",
        lambda n: f"0{n[0]}t{n[1:]}",
        lambda n: f"0{n[0]}\\{n[1:]}",
        lambda n: "not a number",
        lambda n: "N/A",
        lambda n: "12345",
        lambda n: "",
    )
    raws = []
    for _ in range(5000):
        national = str(rng.randint(0, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
        raws.append(rng.choice(shapes)(national))
    load_records(conn, [("A", [_contact(raw) for raw in raws])], page_size=1000)
    stored = conn.execute(
        "SELECT phone, phone_e164, phone_valid, phone_problem FROM campaign_contacts"
    ).fetchall()
    assert len(stored) == len(raws)
    for raw, e164, valid, problem in stored:
        assert (e164, valid) == read_phone_slow(raw), raw
        assert (problem is None) == (e164 is not None), raw


def test_same_number_in_other_formats_is_a_duplicate(conn):
    found = _load(
        conn,
        [_contact("+33612345678", datetime(2025, 3, 23, 6, 30, 5, 120000))],
        [_contact("06 12 34 56 78", datetime(2025, 3, 28, 4, 47, 45))],
    )
    assert found == [
        dup.Duplicate(
            "+33612345678",
            "A",
            datetime(2025, 3, 23, 6, 30, 5, 120000),
            "B",
            datetime(2025, 3, 28, 4, 47, 45),
            True,
        )
    ]


def test_last_call_is_the_latest_among_repeats_of_the_campaign(conn):
    [found] = _load(
        conn,
        [
            _contact("0612345678", datetime(2025, 3, 2)),
            _contact("0033612345678", datetime(2025, 3, 23)),
            _contact("+33 6 12 34 56 78", None),
        ],
        [_contact("0612345678", None)],
    )
    assert (found.last_call_a, found.last_call_b) == (datetime(2025, 3, 23), None)


def test_repeat_inside_one_campaign_is_not_a_cross_campaign_duplicate(conn):
    assert (
        _load(conn, [_contact("0699887766"), _contact("+33699887766")], [_contact("0611111111")])
        == []
    )


def test_numbers_in_unassigned_ranges_still_match(conn):
    """07 0x numbers are invalid in phonenumbers' metadata, yet campaigns dial them: two
    campaigns calling one must be told."""
    found = _load(
        conn,
        [_contact("07 02 26 49 26"), _contact("0712345678")],
        [_contact("+33702264926"), _contact("0033712345678")],
    )
    assert [d.phone for d in found] == ["+33702264926", "+33712345678"]
    assert [d.phone_valid for d in found] == [False, False]
    validity = dict(conn.execute("SELECT phone, phone_valid FROM campaign_contacts").fetchall())
    assert validity["07 02 26 49 26"] is False and validity["0712345678"] is False


def test_a_mistyped_number_is_listed_and_marked_not_valid(conn):
    """0012345678 reads as the US number +12345678: possible, so compared, but not valid."""
    found = _load(
        conn,
        [_contact("0012345678"), _contact("0611111111")],
        [_contact("0012345678"), _contact("06 11 11 11 11")],
    )
    assert [(d.phone, d.phone_valid) for d in found] == [
        ("+12345678", False),
        ("+33611111111", True),
    ]
    dup.build_duplicates_table(conn, "listed")
    assert dup.count_invalid(conn, "listed") == 1
    assert [d.phone_valid for d in dup.read_duplicates(conn, "listed")] == [False, True]


def test_foreign_numbers_match_across_shapes(conn):
    found = _load(conn, [_contact("+44 20 7946 0958")], [_contact("0044 20 7946 0958")])
    assert [d.phone for d in found] == ["+442079460958"]


def test_unreadable_numbers_never_match_and_say_why(conn):
    assert (
        _load(
            conn,
            [_contact("12345"), _contact(None), _contact(""), _contact("N/A")],
            [_contact("12345"), _contact(None), _contact("N/A")],
        )
        == []
    )
    problems = conn.execute(
        "SELECT DISTINCT phone, phone_problem FROM campaign_contacts ORDER BY ALL"
    ).fetchall()
    assert problems == [
        ("", "no number"),
        ("12345", "too short"),
        ("N/A", "not a phone number"),
        (None, "no number"),
    ]


def test_sorted_by_phone(conn):
    found = _load(
        conn,
        [_contact("0699999999"), _contact("0611111111")],
        [_contact("0611111111"), _contact("0699999999")],
    )
    assert [d.phone for d in found] == ["+33611111111", "+33699999999"]


def test_text_format_of_q12(conn):
    found = _load(
        conn,
        [_contact("+33620922865", datetime(2025, 3, 23, 6, 30, 5, 999999))],
        [_contact("0620922865", None)],
        names=("A", "B"),
    )
    assert dup.duplicates_text(found) == "+33620922865\n\tA: 2025-03-23 06:30:05\n\tB: N/A"


def test_json_format(conn):
    found = _load(
        conn,
        [_contact("+33620922865", None)],
        [_contact("0620922865", datetime(2025, 3, 10, 23, 14, 12))],
        names=("summer", "winter"),
    )
    assert json.loads(dup.duplicates_json(found)) == [
        {
            "phone": "+33620922865",
            "last_call": {"summer": None, "winter": "2025-03-10 23:14:12"},
            "phone_valid": True,
        }
    ]


def test_json_marks_a_number_not_valid(conn):
    found = _load(conn, [_contact("0012345678")], [_contact("+1 2345678")])
    assert json.loads(dup.duplicates_json(found)) == [
        {"phone": "+12345678", "last_call": {"A": None, "B": None}, "phone_valid": False}
    ]


def test_check_query_finds_rows_not_in_both(conn):
    _load(conn, [_contact("0611111111")], [_contact("0611111111")])
    conn.execute(
        "CREATE TABLE listed AS SELECT * FROM (VALUES ('+33611111111'), ('+33622222222')) t(phone)"
    )
    assert dup.duplicates_not_in_both(conn, "listed") == ["+33622222222"]
