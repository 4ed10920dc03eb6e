"""Phone normalisation to E.164 (default region FR) and masking for logs."""

import pytest

from salesops_pipeline.campaigns.phones import mask_phone, normalize_phone, read_phone


@pytest.mark.parametrize(
    "raw",
    [
        "+33612345678",
        "0612345678",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "0033612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        " 06 12 34 56 78 ",
    ],
)
def test_every_way_of_writing_one_french_number(raw):
    assert normalize_phone(raw) == "+33612345678"


def test_landlines_and_foreign_numbers():
    assert normalize_phone("01 42 68 53 00") == "+33142685300"
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "no number"),
        ("", "no number"),
        ("   ", "no number"),
        ("12345", "too short"),
        ("N/A", "not a phone number"),
        ("not a number", "not a phone number"),
        ("+33 6 12", "too short"),
        ("0612345678901", "too long"),
        ("+999 123", "unknown country code"),
    ],
)
def test_what_cannot_be_a_number_has_no_e164_form_and_says_why(raw, problem):
    assert read_phone(raw) == (None, None, problem)
    assert normalize_phone(raw) is None


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+33702264926", "+33702264926"),
        ("07 02 26 49 26", "+33702264926"),
        ("07.12.34.56.78", "+33712345678"),
        ("0033 7 22 00 00 01", "+33722000001"),
        ("0690123456", "+33690123456"),
        ("0012345678", "+12345678"),
    ],
)
def test_possible_but_invalid_numbers_keep_their_e164_form(raw, e164):
    """Unassigned ranges (07 0x to 07 2x) are dialled all the same: compared, flagged invalid."""
    reading = read_phone(raw)
    assert (reading.e164, reading.valid, reading.problem) == (e164, False, None)


def test_valid_numbers_are_flagged_valid():
    assert read_phone("06 12 34 56 78") == ("+33612345678", True, None)
    assert read_phone("+44 20 7946 0958") == ("+442079460958", True, None)


def test_other_default_region():
    assert normalize_phone("020 7946 0958", region="GB") == "+442079460958"


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+33612345678", "+33*******78"),
        ("0612345678", "06******78"),
        (None, "<none>"),
        ("12", "**"),
    ],
)
def test_mask_keeps_only_country_and_last_digits(phone, masked):
    assert mask_phone(phone) == masked


def test_fast_path_agrees_with_phonenumbers_on_many_numbers():
    """The direct reading of French shapes gives exactly phonenumbers' answer: the E.164 form
    of every possible number, and whether it is valid."""
    import random

    from salesops_pipeline_tests.support.phones import read_phone_slow

    rng = random.Random(7)
    shapes = (
        lambda n: f"0{n}",
        lambda n: f"+33{n}",
        lambda n: f"0033{n}",
        lambda n: f"+33 {n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:]}",
        lambda n: f"0{n[0]}.{n[1:3]}.{n[3:5]}.{n[5:7]}.{n[7:]}",
        lambda n: f"+33 (0){n}",
        lambda n: f"0{n[:-1]}",
        lambda n: f"00{n}",
        lambda n: f"0{n[0]}-{n[1:3]}-{n[3:5]}-{n[5:7]}-{n[7:]}",
        lambda n: f"0033 {n}",
        lambda n: f"07 {n[1:3]} {n[3:5]} {n[5:7]} {n[7:]}",
        lambda n: f"+33 7 {n[1:]}",
        lambda n: f"+{n[:2]} {n[2:]}",
    )
    for _ in range(20_000):
        national = str(rng.randint(0, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
        raw = rng.choice(shapes)(national)
        reading = read_phone(raw)
        assert (reading.e164, reading.valid) == read_phone_slow(raw), raw
