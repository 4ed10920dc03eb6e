"""The post-call rules (Q2.1 callback date, Q2.2 support transfer: the word asked for and who
may take the contact) and event parsing, over their edge cases; plain functions, no Dagster, no
HTTP."""

from datetime import datetime

import pytest

from salesops_pipeline.clients.wire import parse_provider_datetime
from salesops_pipeline.post_call.events import EventError, parse_event
from salesops_pipeline.post_call.rules import (
    SupportCandidate,
    callback_date,
    can_take_support_contacts,
    decide,
    describe_choice,
    is_callback,
    is_support_transfer,
    least_loaded_agent,
    support_loads,
)


def d(text):
    return parse_provider_datetime(text)


@pytest.mark.parametrize(
    ("call_end", "requested", "expected"),
    [
        # The test's examples.
        ("07/04/2025 10:26:14", "14/04/2025 10:30:00", "2025-04-14T10:30:00"),
        ("07/04/2025 10:26:14", "07/04/2025 18:00:00", "2025-04-08T18:00:00"),
        # Same day, earlier in the day than the call.
        ("07/04/2025 10:26:14", "07/04/2025 08:00:00", "2025-04-08T08:00:00"),
        # A date before the call's day.
        ("07/04/2025 10:26:14", "01/04/2025 09:15:00", "2025-04-08T09:15:00"),
        # The day after is accepted as it is.
        ("07/04/2025 23:59:59", "08/04/2025 00:00:00", "2025-04-08T00:00:00"),
        # Month end, year end, leap day.
        ("30/04/2025 17:00:00", "30/04/2025 18:00:00", "2025-05-01T18:00:00"),
        ("31/12/2025 17:00:00", "31/12/2025 09:00:00", "2026-01-01T09:00:00"),
        ("28/02/2028 12:00:00", "28/02/2028 12:30:00", "2028-02-29T12:30:00"),
        # DST: the day after a spring change keeps the wall-clock time.
        ("30/03/2025 10:00:00", "30/03/2025 11:00:00", "2025-03-31T11:00:00"),
        # DST: 02:30 does not exist on 30 March 2025 in Paris; it moves past the gap.
        ("29/03/2025 10:00:00", "29/03/2025 02:30:00", "2025-03-30T03:30:00"),
        # DST: 02:30 happens twice on 26 October 2025; the wall-clock time is kept.
        ("25/10/2025 10:00:00", "25/10/2025 02:30:00", "2025-10-26T02:30:00"),
    ],
)
def test_callback_date(call_end, requested, expected):
    assert callback_date(d(call_end), d(requested)).isoformat() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14/04/2025 10:30:00", datetime(2025, 4, 14, 10, 30)),
        ("2025-04-14T10:30:00", datetime(2025, 4, 14, 10, 30)),
        ("2025-04-14 10:30:00", datetime(2025, 4, 14, 10, 30)),
        # An explicit offset is converted to Paris local time (UTC+2 in April).
        ("2025-04-14T08:30:00Z", datetime(2025, 4, 14, 10, 30)),
        ("2025-01-14T10:30:00+01:00", datetime(2025, 1, 14, 10, 30)),
        (None, None),
        ("  ", None),
    ],
)
def test_dates_accepted(text, expected):
    assert parse_provider_datetime(text) == expected


@pytest.mark.parametrize("text", ["31/02/2025 10:00:00", "14/04/2025", "tomorrow", "2025-13-01"])
def test_impossible_dates_are_refused_with_the_value(text):
    with pytest.raises(ValueError, match="not a valid date"):
        parse_provider_datetime(text)


def _decide(wrapup, callback=None, end="07/04/2025 10:26:14", start="07/04/2025 10:23:08"):
    return decide(
        wrapup=wrapup,
        call_end=d(end),
        call_start=d(start),
        callback_requested=d(callback),
        callback_labels=("Rappel",),
        support_keyword="support",
    )


def test_callback_label_is_case_insensitive():
    assert is_callback(" rappel ", ("Rappel",))
    assert not is_callback("Rappel plus tard", ("Rappel",))
    assert _decide("RAPPEL", "07/04/2025 18:00:00").reschedule_to == datetime(2025, 4, 8, 18)


def test_callback_without_date_is_nothing_to_do():
    decision = _decide("Rappel", None)
    assert not decision.has_work
    assert "without a date" in decision.note


def test_call_day_falls_back_to_call_start():
    decision = _decide("Rappel", "07/04/2025 18:00:00", end=None)
    assert decision.reschedule_to == datetime(2025, 4, 8, 18)


def test_support_keyword_anywhere_in_the_wrapup():
    assert _decide("Transfert Support technique").transfer_to_support
    assert not _decide("Vente").has_work


@pytest.mark.parametrize(
    "wrapup",
    ["support", "Transfert support", "SUPPORT technique", "Client -> support.", "(Support)"],
)
def test_support_as_a_word_transfers(wrapup):
    assert is_support_transfer(wrapup, "support")
    assert _decide(wrapup).transfer_to_support


@pytest.mark.parametrize(
    "wrapup",
    ["unsupported number", "Numéro non supporté", "supports", "supportive", "", None],
)
def test_support_inside_another_word_does_not_transfer(wrapup):
    assert not is_support_transfer(wrapup, "support")
    assert not _decide(wrapup).transfer_to_support


def test_an_empty_support_keyword_transfers_nothing():
    assert not is_support_transfer("Transfert support", "")
    assert not is_support_transfer("Transfert support", "  ")


@pytest.mark.parametrize(
    ("active", "team", "eligible"),
    [
        (True, "support", True),
        (None, "support", False),  # the CRM did not say: not known to be active
        (False, "support", False),
        (True, "sales", False),
        (True, None, False),
        (True, "Support", False),
    ],
)
def test_only_explicitly_active_support_agents_take_contacts(active, team, eligible):
    assert can_take_support_contacts(active, team, "support") is eligible


def test_reference_events_decisions():
    first = parse_event(
        b'{"callId": "1", "contactId": "c", "wrapup": "Rappel",'
        b' "callBackDate": "14/04/2025 10:30:00", "callEnd": "07/04/2025 10:26:14"}'
    )
    assert _decide(first.wrapup, first.callBackDate).reschedule_to == datetime(2025, 4, 14, 10, 30)


def _candidate(name, load, active=True):
    return SupportCandidate(name, active, load)


def test_least_loaded_wins():
    assert least_loaded_agent([_candidate("b", 3), _candidate("a", 5), _candidate("c", 1)]) == "c"


def test_ties_go_to_the_first_username():
    assert (
        least_loaded_agent([_candidate("zoe", 2), _candidate("anna", 2), _candidate("max", 4)])
        == "anna"
    )


def test_inactive_agent_is_never_chosen_even_with_no_load():
    assert (
        least_loaded_agent([_candidate("idle", 0, active=False), _candidate("busy", 9)]) == "busy"
    )


def test_no_active_agent():
    assert least_loaded_agent([_candidate("idle", 0, active=False)]) is None
    assert least_loaded_agent([]) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"event"', "expected a JSON object"),
        (b'{"contactId": "c"}', "callId is missing"),
        (b'{"callId": "1"}', "contactId is missing"),
        (b'{"callId": "1", "contactId": "c", "callEnd": "32/01/2025 10:00:00"}', "callEnd"),
        (b'{"callId": "1", "contactId": "c", "wrapup": {"a": 1}}', "wrapup"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_bodies_are_named(body, message):
    with pytest.raises(EventError, match=message):
        parse_event(body)


def test_extra_fields_and_numbers_are_accepted():
    event = parse_event(b'{"callId": 102224021, "contactId": "c", "question": "2"}')
    assert event.callId == "102224021"
    assert event.model_extra == {"question": "2"}


LISTED = "2025-04-07T10:00:00.000+00:00"  # shortly before the load campaign was read
BEFORE, AFTER = "2025-04-01T09:00:00.000+00:00", "2025-04-07T10:00:01.000+00:00"


def test_loads_count_campaign_contacts_and_later_transfers_once():
    campaign = {"c1": "anna", "c2": "anna", "c3": "max", "c4": "zoe", "c5": None}
    # Since the list was read: c3 moved to anna, c5 assigned to max.
    transferred = {"c3": ("anna", AFTER), "c5": ("max", AFTER)}
    assert support_loads(campaign, LISTED, transferred, moving_contact="c4") == {
        "anna": 3,
        "max": 1,
    }


def test_a_listed_contact_is_counted_as_the_list_says_once_it_had_time_to_show():
    # The pipeline gave c1 to zoe long before the list was read; the list shows anna holding
    # it now (someone moved it): the list decides.
    counted = {"c1": ("zoe", BEFORE)}
    assert support_loads({"c1": "anna"}, LISTED, counted, moving_contact="c9") == {"anna": 1}


def test_a_transferred_contact_outside_the_campaign_counts_for_its_agent():
    # c9 is not in the load campaign (a campaign-A contact handed to support): it counts for
    # zoe until the list shows it, a later transfer moves it, or the load period ends.
    loads = support_loads({"c1": "anna"}, LISTED, {"c9": ("zoe", BEFORE)}, moving_contact="c2")
    assert loads == {"anna": 1, "zoe": 1}


def test_a_contact_counts_once_for_its_latest_holder_and_not_while_it_moves():
    counted = {"c9": ("zoe", AFTER), "c8": ("zoe", BEFORE)}
    assert support_loads({}, LISTED, counted, moving_contact="c9") == {"zoe": 1}


def test_agent_with_no_contact_has_load_zero():
    loads = support_loads({"c1": "anna"}, LISTED, {}, moving_contact="c2")
    candidates = [_candidate(name, loads.get(name, 0)) for name in ("anna", "bob")]
    assert least_loaded_agent(candidates) == "bob"


def test_a_transfer_sent_again_keeps_its_agent_only_while_a_candidate():
    candidates = [_candidate("anna", 0), _candidate("bob", 5), _candidate("zoe", 1, active=False)]
    assert least_loaded_agent(candidates, keep="bob") == "bob"  # still active: not moved
    assert least_loaded_agent(candidates, keep="zoe") == "anna"  # inactive now: chosen again
    assert least_loaded_agent(candidates, keep="gone") == "anna"  # no longer in support


def test_a_transfer_explains_its_choice_lightest_first_and_bounded():
    candidates = [
        SupportCandidate("zoe@x", True, 1),
        SupportCandidate("ana@x", True, 1),
        SupportCandidate("off@x", False, 0),  # inactive: never among the loads shown
        SupportCandidate("max@x", True, 4),
    ]
    assert describe_choice("ana@x", candidates) == (
        "ana@x (least loaded; loads: ana@x 1, zoe@x 1, max@x 4)"
    )
    assert describe_choice("max@x", candidates, kept=True).startswith(
        "max@x (kept, still an active support agent; loads: ana@x 1"
    )
    many = [SupportCandidate(f"a{n:02d}@x", True, n) for n in range(10)]
    assert describe_choice("a00@x", many, shown=3) == (
        "a00@x (least loaded; loads: a00@x 0, a01@x 1, a02@x 2, and 7 more)"
    )
