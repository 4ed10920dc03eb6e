"""Phone normalisation to E.164 (default region FR) and masking for logs."""

import pytest

from salesops_pipeline.campaigns.phones import mask_phone, normalize_phone


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
    "raw", [None, "", "12345", "not a number", "0012345678", "0690123456", "+33 6 12"]
)
def test_invalid_numbers_have_no_e164_form(raw):
    assert normalize_phone(raw) is None


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
    """The direct reading of French shapes gives exactly phonenumbers' answer."""
    import random

    from salesops_pipeline_tests.support.phones import normalize_phone_slow

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
    )
    for _ in range(20_000):
        national = str(rng.randint(0, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
        raw = rng.choice(shapes)(national)
        assert normalize_phone(raw) == normalize_phone_slow(raw), raw
