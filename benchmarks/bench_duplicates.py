"""Q1 duplicates: two campaigns of N contacts each, 10% of B's numbers also in A, written in
mixed formats, as the provider's JSON pages on disk.

From the pages to the list of shared numbers: ours (DuckDB reads the pages, numbers read in
the database) against the test's pure-Python way (json, phonenumbers per contact, a dict of
last calls) and pandas (read_json, the numbers mapped, a merge). Then the
`cross_campaign_duplicates` step alone, from the contacts already stored, the same three ways.
"""

import json
import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks.common import Case, cache_dir, compare, measure, prepared
from salesops_pipeline.campaigns import contacts as contacts_table
from salesops_pipeline.campaigns import duplicates as dup
from salesops_pipeline.campaigns.contacts import CONTACTS
from salesops_pipeline.campaigns.phones import normalize_phone
from salesops_pipeline.services.sandbox.seed import PHONE_FORMATS, _national_mobile
from salesops_pipeline_tests.support.phones import normalize_phone_slow

PAGE_SIZE = 10_000


def campaign_pages(size: int) -> list[list[Path]]:
    """Both campaigns' pages, generated once per size and kept between runs."""
    root = cache_dir() / f"duplicates-{size}"
    done = root / "complete"
    if not done.exists():
        rng = random.Random(42)
        start = datetime(2025, 3, 1)
        a_numbers = [_national_mobile(rng) for _ in range(size)]
        b_numbers = [
            rng.choice(a_numbers) if rng.random() < 0.1 else _national_mobile(rng)
            for _ in range(size)
        ]
        for name, numbers in (("A", a_numbers), ("B", b_numbers)):
            records = [
                {
                    "id": f"{name}{n}",
                    "phone": rng.choice(PHONE_FORMATS)(number),
                    "lastCallAt": (start + timedelta(seconds=rng.randrange(30 * 86400))).isoformat()
                    if rng.random() < 0.7
                    else None,
                }
                for n, number in enumerate(numbers)
            ]
            directory = root / name
            directory.mkdir(parents=True, exist_ok=True)
            for page, first in enumerate(range(0, size, PAGE_SIZE)):
                chunk = records[first : first + PAGE_SIZE]
                (directory / f"page-{page:06d}.json").write_text(json.dumps(chunk))
        done.touch()
    return [sorted((root / name).glob("page-*.json")) for name in ("A", "B")]


def _pages(params: dict) -> list[list[Path]]:
    return campaign_pages(params["contacts"])


def _stage(conn: duckdb.DuckDBPyConnection, campaigns: list[list[Path]]) -> None:
    contacts_table.start_loading(conn, CONTACTS)
    with contacts_table.loading_settings(conn):
        for position, pages in enumerate(campaigns, start=1):
            contacts_table.stage_pages(
                conn,
                dict(enumerate(pages, start=1)),
                table=CONTACTS,
                position=position,
                campaign="AB"[position - 1],
            )
    contacts_table.finish_loading(conn, CONTACTS)
    contacts_table.read_other_phones(conn)


def run_duckdb(campaigns) -> int:
    conn = duckdb.connect()
    _stage(conn, campaigns)
    return len(dup.find_duplicates(conn))


def _last_calls(records, normalize) -> dict:
    last: dict = {}
    for record in records:
        phone = normalize(record["phone"])
        if phone is None:
            continue
        called = record["lastCallAt"] and datetime.fromisoformat(record["lastCallAt"])
        if phone not in last or (
            called is not None and (last[phone] is None or called > last[phone])
        ):
            last[phone] = called
    return last


def run_pure_python(campaigns) -> int:
    a, b = (
        _last_calls(
            (r for page in pages for r in json.loads(page.read_bytes())), normalize_phone_slow
        )
        for pages in campaigns
    )
    return len([(phone, a[phone], b[phone]) for phone in sorted(a.keys() & b.keys())])


def run_pandas(campaigns) -> int:
    frames = []
    for pages in campaigns:
        frame = pd.concat(
            [pd.read_json(page, orient="records", dtype={"phone": str}) for page in pages]
        )
        frame["e164"] = frame["phone"].map(normalize_phone)
        frame["last"] = pd.to_datetime(frame["lastCallAt"])
        frames.append(frame.dropna(subset=["e164"]).groupby("e164")["last"].max())
    merged = pd.merge(frames[0], frames[1], left_index=True, right_index=True)
    return len(merged)


# The duplicates step alone, from contacts already stored in the warehouse.


def _stored(params: dict) -> dict:
    """A warehouse file holding both campaigns' contacts (built once per size)."""
    path = cache_dir() / f"duplicates-{params['contacts']}.duckdb"
    if not path.exists():
        pages = campaign_pages(params["contacts"])
        building = path.with_suffix(".building")
        building.unlink(missing_ok=True)
        conn = duckdb.connect(str(building))
        try:
            _stage(conn, pages)
        finally:
            conn.close()
        building.rename(path)
    return {"path": path}


def _stored_copy(params: dict) -> duckdb.DuckDBPyConnection:
    """A warehouse of its own holding the stored contacts, as the asset finds it."""
    stored = _stored(params)
    directory = Path(tempfile.mkdtemp(prefix="salesops-bench-"))
    conn = duckdb.connect(str(directory / "warehouse.duckdb"))
    conn.execute(f"ATTACH '{stored['path']}' AS stored (READ_ONLY)")
    with contacts_table.loading_settings(conn):
        conn.execute(f"CREATE TABLE {CONTACTS} AS FROM stored.{CONTACTS}")
    conn.execute("DETACH stored")
    conn.execute("CHECKPOINT")
    return conn


def run_stored_duckdb(conn: duckdb.DuckDBPyConnection) -> int:
    return dup.build_duplicates_table(conn, "cross_campaign_duplicates")


def _stored_columns(params: dict) -> pd.DataFrame:
    stored = _stored(params)
    conn = duckdb.connect(str(stored["path"]), read_only=True)
    try:
        return conn.execute(f"SELECT position, phone_e164, last_call_at FROM {CONTACTS}").df()
    finally:
        conn.close()


def run_stored_pandas(frame: pd.DataFrame) -> int:
    known = frame.dropna(subset=["phone_e164"])
    last = [
        known[known["position"] == position].groupby("phone_e164")["last_call_at"].max()
        for position in (1, 2)
    ]
    return len(pd.merge(last[0], last[1], left_index=True, right_index=True))


def _stored_rows(params: dict) -> list[tuple]:
    return list(_stored_columns(params).itertuples(index=False, name=None))


def run_stored_pure_python(rows: list[tuple]) -> int:
    last: list[dict] = [{}, {}]
    for position, phone, called in rows:
        if phone is None:
            continue
        seen = last[position - 1]
        if called != called:  # NaT: never called
            called = None
        if phone not in seen or (
            called is not None and (seen[phone] is None or called > seen[phone])
        ):
            seen[phone] = called
    return len(last[0].keys() & last[1].keys())


def _agreeing(cases: list[Case], params: dict, repeat: int, expected=None) -> list:
    """Each case measured; every method must find the same numbers (and `expected`)."""
    figures = [measure(case, params, repeat) for case in cases]
    found = {f.name: f.result for f in figures}
    agreed = set(found.values()) | ({expected} if expected is not None else set())
    assert len(agreed) == 1, f"the methods disagree: {found}"
    return figures


def main(scale: int, repeat: int) -> str:
    params = {"contacts": scale}
    prepared(_stored, params)
    cases = [
        Case("DuckDB SQL (ours)", _pages, run_duckdb),
        Case("pandas read_json + merge", _pages, run_pandas),
        Case("pure Python + phonenumbers", _pages, run_pure_python, baseline=True),
    ]
    figures = _agreeing(cases, params, repeat)
    ours = figures[0]
    first = compare(
        f"Duplicates: 2 × {scale:,} contacts from the provider's pages, 10% overlap",
        figures,
        2 * scale,
        "contacts",
        f"All three find the same {ours.result:,} numbers. Ours:"
        f" {ours.median / (2 * scale / 1e6):.2f} s per million contacts, pages read included.",
    )
    stored_cases = [
        Case("cross_campaign_duplicates (ours)", _stored_copy, run_stored_duckdb),
        Case("pandas groupby + merge", _stored_columns, run_stored_pandas),
        Case("pure Python dicts", _stored_rows, run_stored_pure_python, baseline=True),
    ]
    stored_figures = _agreeing(stored_cases, params, repeat, expected=ours.result)
    second = compare(
        f"Duplicates step alone: 2 × {scale:,} stored contacts",
        stored_figures,
        2 * scale,
        "contacts",
        "The asset's own work once `campaign_contacts` is stored: one query over the table.",
    )
    return first + "\n" + second
