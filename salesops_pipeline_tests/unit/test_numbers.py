"""One French way of writing money, counts and percentages for every table and chart."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesops_pipeline import numbers

NNBSP, NBSP = "\u202f", "\u00a0"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (1813299.0, f"1{NNBSP}813{NNBSP}299,00{NBSP}€"),
        (20800, f"20{NNBSP}800,00{NBSP}€"),
        (0.5, f"0,50{NBSP}€"),
        (-899.0, f"-899,00{NBSP}€"),
        (None, "–"),
    ],
)
def test_money(amount, text):
    assert numbers.money(amount) == text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0.125, f"12,5{NBSP}%"), (1.0, f"100,0{NBSP}%"), (8.0, f"800,0{NBSP}%"), (None, "–")],
)
def test_percent(ratio, text):
    assert numbers.percent(ratio) == text


def test_count_and_change():
    assert numbers.count(20800) == f"20{NNBSP}800"
    assert numbers.change(0.125) == f"+12,5{NBSP}%"
    assert numbers.change(-0.03) == f"-3,0{NBSP}%"
    assert numbers.change(None) == "–"


@given(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))
def test_money_reads_back_to_the_cent(amount):
    text = numbers.money(amount)
    assert text.endswith(f"{NBSP}€") and "." not in text
    digits = text.removesuffix(f"{NBSP}€").replace(NNBSP, "").replace(",", ".")
    assert float(digits) == pytest.approx(round(amount, 2), abs=0.006)
