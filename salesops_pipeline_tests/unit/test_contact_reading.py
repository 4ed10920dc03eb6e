"""The provider's contact pages read in columns by DuckDB: every record kept or reported as
plain Python reading the same rules would, on random records split into random pages, and
the pages that are not lists of objects refused plainly."""

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesops_pipeline.campaigns import contacts as contacts_table
from salesops_pipeline_tests.support.contacts import load_records, write_pages

TEXT_FIELDS = ("id", "campaign_id", "phone", "assignedAgent", "wrapup", "crm_id")
DATE_FIELDS = ("lastCallAt", "retryDate")
ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?")
ISO_WITH_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)"
)
PARIS = ZoneInfo("Europe/Paris")


def _as_text(value):
    """A JSON value as the reading keeps it for a text field; ValueError when it is not text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list)):
        raise ValueError
    return json.dumps(value)


def _date(value):
    text = value if isinstance(value, str) else json.dumps(value)
    if ISO.fullmatch(text):
        return datetime.fromisoformat(text)
    if ISO_WITH_OFFSET.fullmatch(text):
        return datetime.fromisoformat(text).astimezone(PARIS).replace(tzinfo=None)
    raise ValueError


def _count(value):
    if isinstance(value, (bool, dict, list)):
        raise ValueError
    number = float(value)
    if number != number or abs(number) >= 1e15 or number != int(number):
        raise ValueError
    return int(number)


def expected(records: list) -> tuple[list[tuple], list[tuple]]:
    """(kept rows, rejected (index, id, reason)) by the documented rules, in plain Python."""
    kept, rejected = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            rejected.append((index, None, "record: not an object"))
            continue
        reasons, row = [], {}
        for field in TEXT_FIELDS:
            try:
                row[field] = _as_text(record.get(field))
            except ValueError:
                reasons.append(f"{field}: expected text")
        for field in DATE_FIELDS:
            value = record.get(field)
            try:
                row[field] = None if value is None else _date(value)
            except ValueError:
                reasons.append(f"{field}: not an ISO 8601 date")
        value = record.get("totalCalls")
        try:
            row["totalCalls"] = None if value is None else _count(value)
        except ValueError:
            reasons.append("totalCalls: not a whole number")
        if reasons:
            identifier = record.get("id")
            shown = None if isinstance(identifier, (bool, dict, list)) else _as_text(identifier)
            rejected.append((index, shown, "; ".join(reasons)))
        else:
            kept.append(
                (
                    row["id"],
                    row["phone"],
                    row["lastCallAt"],
                    row["retryDate"],
                    row["assignedAgent"],
                    row["wrapup"],
                    row["totalCalls"],
                    row["crm_id"],
                )
            )
    return kept, rejected


odd_values = st.one_of(
    st.booleans(),
    st.just({"nested": 1}),
    st.just([1, 2]),
    st.just("true"),
    st.just("{not json}"),
)
texts = st.one_of(st.none(), st.text(max_size=12), st.integers(-(10**6), 10**6), odd_values)
dates = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2025-03-31T18:25:46.651296",
            "2025-03-31 18:25:46",
            "2025-03-31T18:25",
            "2025-03-31",
            "2025-03-31T18:25:46Z",
            "2025-03-31T18:25:46+02:00",
            "2025-10-26T02:30:00-0530",
            "2025-02-30T10:00:00",
            "31/03/2025 18:25:46",
            "yesterday",
            "",
        ]
    ),
    st.integers(0, 2_000_000_000),
    odd_values,
)
counts = st.one_of(
    st.none(),
    st.integers(-5, 10**6),
    st.sampled_from([2.0, 2.5, "3", "3.0", "3.5", "many", "", " 4", "-2", "1e2", "nan"]),
    odd_values,
)
records = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            **dict.fromkeys(TEXT_FIELDS, texts),
            **dict.fromkeys(DATE_FIELDS, dates),
            "totalCalls": counts,
            "colour": st.text(max_size=5),
        },
    ),
    st.fixed_dictionaries({"id": st.uuids().map(str), "phone": st.just("0612345678")}),
    st.sampled_from(["garbage", 7, None, [1]]),
)


def _stored(conn) -> list[tuple]:
    return conn.execute(
        f"""SELECT contact_id, phone, last_call_at, retry_date, assigned_agent, wrapup,
                   total_calls, crm_id
            FROM {contacts_table.CONTACTS} ORDER BY ALL"""
    ).fetchall()


def _flatten(rejected_by_page: dict, records_per_page: list[int]) -> list[tuple]:
    """Rejects placed in the whole list: a page's index plus the records of pages before."""
    flat, offset = [], 0
    for page, size in enumerate(records_per_page, start=1):
        flat += [(offset + r.index, r.record_id, r.reason) for r in rejected_by_page.get(page, [])]
        offset += size
    return flat


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(records, max_size=40), st.integers(1, 15))
def test_columns_reading_matches_the_rules_in_python(batch, page_size):
    conn = duckdb.connect()
    try:
        [rejected] = load_records(conn, [("A", batch)], page_size=page_size)
        kept, refused = expected(batch)
        assert _stored(conn) == sorted(kept, key=_sort_key)
        sizes = [len(batch[start : start + page_size]) for start in range(0, len(batch), page_size)]
        assert _flatten(rejected, sizes) == refused
    finally:
        conn.close()


def _sort_key(row: tuple):
    # ORDER BY ALL: NULLs last, column by column.
    return tuple((value is None, value if value is not None else 0) for value in row)


def test_a_malformed_record_is_reported_with_its_place_id_and_every_reason():
    conn = duckdb.connect()
    try:
        batch = [
            {"id": "ok-1", "phone": "0612345678"},
            {"id": "bad", "phone": True, "lastCallAt": "yesterday", "totalCalls": "many"},
            "garbage",
            {"id": "ok-2", "wrapup": "true", "lastCallAt": "2025-03-31T18:25:46+02:00"},
        ]
        [rejected] = load_records(conn, [("A", batch)], page_size=3)
        assert _flatten(rejected, [3, 1]) == [
            (
                1,
                "bad",
                "phone: expected text; lastCallAt: not an ISO 8601 date;"
                " totalCalls: not a whole number",
            ),
            (2, None, "record: not an object"),
        ]
        rows = conn.execute(
            "SELECT contact_id, wrapup, last_call_at FROM campaign_contacts ORDER BY 1"
        ).fetchall()
        # A real "true" is text; an offset is converted to Paris time.
        assert rows == [("ok-1", None, None), ("ok-2", "true", datetime(2025, 3, 31, 18, 25, 46))]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b'[{"id": 1}', "not a JSON list"), (b"<html>busy</html>", "not a JSON list")],
)
def test_a_page_that_is_not_a_json_list_is_refused_plainly(tmp_path, body, problem):
    conn = duckdb.connect()
    try:
        contacts_table.start_loading(conn, "loading")
        [page] = write_pages(tmp_path, [])
        page.write_bytes(body)
        with pytest.raises(ValueError, match=problem):
            contacts_table.stage_pages(conn, {1: page}, table="loading", position=1, campaign="A")
    finally:
        conn.close()


def test_an_object_instead_of_a_list_is_refused_plainly(tmp_path):
    conn = duckdb.connect()
    try:
        contacts_table.start_loading(conn, "loading")
        [page] = write_pages(tmp_path, [])
        page.write_text(json.dumps({"contacts": [{"id": 1}]}))
        with pytest.raises(ValueError, match="not a JSON list"):
            contacts_table.stage_pages(conn, {1: page}, table="loading", position=1, campaign="A")
    finally:
        conn.close()
