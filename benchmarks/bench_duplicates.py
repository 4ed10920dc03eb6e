"""Q1 duplicates: two campaigns of N contacts each, 10% of B's numbers also in A, written in
mixed formats. Ours (DuckDB SQL, numbers read in the database) against the test's pure-Python
way (phonenumbers per contact, a dict of last calls) and a pandas merge."""

import random
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from benchmarks.common import Case, compare, measure
from salesops_pipeline.campaigns import contacts as contacts_table
from salesops_pipeline.campaigns import duplicates as dup
from salesops_pipeline.campaigns.phones import normalize_phone
from salesops_pipeline.clients.models import VoiceContact
from salesops_pipeline.services.sandbox.seed import PHONE_FORMATS, _national_mobile
from salesops_pipeline_tests.support.phones import normalize_phone_slow


def make_campaigns(params: dict) -> list[list[VoiceContact]]:
    size = params["contacts"]
    rng = random.Random(42)
    start = datetime(2025, 3, 1)
    a_numbers = [_national_mobile(rng) for _ in range(size)]
    b_numbers = [
        rng.choice(a_numbers) if rng.random() < 0.1 else _national_mobile(rng) for _ in range(size)
    ]
    campaigns = []
    for numbers in (a_numbers, b_numbers):
        campaigns.append(
            [
                VoiceContact.model_construct(
                    id=str(n),
                    phone=rng.choice(PHONE_FORMATS)(number),
                    last_call_at=(
                        start + timedelta(seconds=rng.randrange(30 * 86400))
                        if rng.random() < 0.7
                        else None
                    ),
                )
                for n, number in enumerate(numbers)
            ]
        )
    return campaigns


def run_duckdb(campaigns) -> int:
    conn = duckdb.connect()
    contacts_table.reset_contacts(conn)
    for position, contacts in enumerate(campaigns, start=1):
        contacts_table.insert_contacts(
            conn, contacts_table.contact_columns(position, "AB"[position - 1], contacts)
        )
    contacts_table.normalize_phones(conn)
    return len(dup.find_duplicates(conn))


def _last_calls(contacts, normalize) -> dict:
    last: dict = {}
    for contact in contacts:
        phone = normalize(contact.phone)
        if phone is None:
            continue
        called = contact.last_call_at
        if phone not in last or (
            called is not None and (last[phone] is None or called > last[phone])
        ):
            last[phone] = called
    return last


def run_pure_python(campaigns) -> int:
    a, b = (_last_calls(contacts, normalize_phone_slow) for contacts in campaigns)
    return len([(phone, a[phone], b[phone]) for phone in sorted(a.keys() & b.keys())])


def run_pandas(campaigns) -> int:
    frames = []
    for contacts in campaigns:
        frame = pd.DataFrame(
            {"phone": [c.phone for c in contacts], "last": [c.last_call_at for c in contacts]}
        )
        frame["e164"] = frame["phone"].map(normalize_phone)
        frames.append(frame.dropna(subset=["e164"]).groupby("e164")["last"].max())
    merged = pd.merge(frames[0], frames[1], left_index=True, right_index=True)
    return len(merged)


def main(scale: int, repeat: int) -> str:
    params = {"contacts": scale}
    cases = [
        Case("DuckDB SQL (ours)", make_campaigns, run_duckdb),
        Case("pandas merge", make_campaigns, run_pandas),
        Case("pure Python + phonenumbers", make_campaigns, run_pure_python, baseline=True),
    ]
    figures = [measure(case, params, repeat) for case in cases]
    found = {f.name: f.result for f in figures}
    assert len(set(found.values())) == 1, f"the methods disagree: {found}"
    ours = figures[0]
    return compare(
        f"Duplicates: 2 × {scale:,} contacts, 10% overlap",
        figures,
        2 * scale,
        "contacts",
        f"All three find the same {ours.result:,} numbers. Ours:"
        f" {ours.median / (2 * scale / 1e6):.2f} s per million contacts.",
    )
