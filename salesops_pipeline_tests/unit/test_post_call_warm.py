"""Warm hours and lane settings: windows of Paris time (past midnight, to 24:00, across a
change of summer time), and settings that make no sense refused with their reason, from the
environment as from code."""

from datetime import UTC, datetime

import pytest

from salesops_pipeline.errors import SettingError
from salesops_pipeline.post_call.lanes import LaneSettings, configured_lane_settings, group_name
from salesops_pipeline.post_call.warm import WarmHours


def _paris(text: str) -> datetime:
    """A moment given as Paris wall time in winter (UTC+1)."""
    naive = datetime.fromisoformat(text)
    return naive.replace(tzinfo=UTC).replace(hour=(naive.hour - 1) % 24)


def test_a_window_holds_from_its_start_to_just_before_its_end_paris_time():
    hours = WarmHours.parse("08:00-20:00")
    # 07:00 UTC in January is 08:00 in Paris; 07:00 UTC in July is 09:00.
    assert hours.contains(datetime(2026, 1, 15, 7, 0, tzinfo=UTC))
    assert not hours.contains(datetime(2026, 1, 15, 6, 59, tzinfo=UTC))
    assert not hours.contains(datetime(2026, 1, 15, 19, 0, tzinfo=UTC))
    assert hours.contains(datetime(2026, 7, 15, 17, 59, tzinfo=UTC))
    assert not hours.contains(datetime(2026, 7, 15, 18, 0, tzinfo=UTC))


def test_windows_may_be_several_run_past_midnight_or_end_at_24():
    split = WarmHours.parse("08:00-12:30, 13:30-20:00")
    assert split.spec == "08:00-12:30,13:30-20:00"
    assert split.contains(_paris("2026-01-15T12:29:00"))
    assert not split.contains(_paris("2026-01-15T13:00:00"))
    night = WarmHours.parse("22:00-06:00")
    assert night.contains(_paris("2026-01-15T23:30:00"))
    assert night.contains(_paris("2026-01-15T05:59:00"))
    assert not night.contains(_paris("2026-01-15T06:00:00"))
    evening = WarmHours.parse("18:00-24:00")
    assert evening.contains(_paris("2026-01-15T23:59:00"))
    assert not evening.contains(_paris("2026-01-15T17:59:00"))


def test_always_and_never():
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # the night summer time starts
    assert WarmHours.parse("always").contains(moment)
    assert WarmHours.parse(" ALWAYS ").contains(moment)
    never = WarmHours.parse("never")
    assert never.never and not never.contains(moment)
    assert WarmHours.parse("off").never


@pytest.mark.parametrize(
    "text, reason",
    [
        ("25:00-26:00", "expected 'always', 'never' or windows"),
        ("08:00-08:60", "expected 'always', 'never' or windows"),
        ("8-20", "expected 'always', 'never' or windows"),
        ("24:00-08:00", "expected 'always', 'never' or windows"),
        ("", "expected 'always', 'never' or windows"),
        ("08:00-20:00,", "expected 'always', 'never' or windows"),
        ("working hours", "expected 'always', 'never' or windows"),
        ("08:00-08:00", "is empty; use 'always'"),
    ],
)
def test_warm_hours_that_make_no_sense_are_refused_with_the_reason(text, reason):
    with pytest.raises(SettingError, match=reason) as raised:
        WarmHours.parse(text, setting="SALESOPS_POST_CALL_WARM_HOURS")
    assert "SALESOPS_POST_CALL_WARM_HOURS" in str(raised.value)


def test_runs_share_the_lanes_each_lane_in_exactly_one_run():
    settings = LaneSettings(lanes=5, runs=2)
    assert settings.groups() == [(0, 2, 4), (1, 3)]
    assert [group_name(g) for g in settings.groups()] == ["0,2,4", "1,3"]
    assert LaneSettings(lanes=4).groups() == [(0, 1, 2, 3)]
    assert LaneSettings(lanes=4, runs=4).groups() == [(0,), (1,), (2,), (3,)]


@pytest.mark.parametrize(
    "settings, reason",
    [
        ({"lanes": 0}, "lanes must be a whole number of at least 1"),
        ({"lanes": 2, "runs": 3}, "runs must be a whole number from 1 to the number of lanes"),
        ({"runs": 0}, "runs must be a whole number from 1"),
        ({"batch": 0}, "batch must be a whole number of at least 1"),
        ({"lanes": 8, "runs": 5}, "runs must be at most 4 \\(got 5\\): each run holds a slot"),
        ({"lanes": 65}, "lanes must be at most 64"),
        ({"idle_seconds": -1.0}, "idle_seconds must be a finite number of at least 0"),
        ({"idle_seconds": float("nan")}, "idle_seconds must be a finite number"),
        ({"idle_seconds": float("inf")}, "idle_seconds must be a finite number"),
        ({"idle_seconds": 3600.0}, "must be shorter than a run's 3600 s"),
        (
            {"idle_seconds": 0.0, "warm_hours": WarmHours.parse("always")},
            "one pass per run\\) cannot keep runs warm",
        ),
    ],
)
def test_lane_settings_that_make_no_sense_are_refused(settings, reason):
    with pytest.raises(SettingError, match=reason):
        LaneSettings(**settings)


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"SALESOPS_POST_CALL_LANES": "0"}, "SALESOPS_POST_CALL_LANES='0': expected a whole"),
        ({"SALESOPS_POST_CALL_RUNS": "5"}, "runs must be a whole number from 1 to the number"),
        ({"SALESOPS_POST_CALL_IDLE_SECONDS": "nan"}, "SALESOPS_POST_CALL_IDLE_SECONDS='nan'"),
        ({"SALESOPS_POST_CALL_IDLE_SECONDS": "inf"}, "SALESOPS_POST_CALL_IDLE_SECONDS='inf'"),
        ({"SALESOPS_POST_CALL_WARM_HOURS": "9h-18h"}, "SALESOPS_POST_CALL_WARM_HOURS='9h-18h'"),
        ({"SALESOPS_POST_CALL_RUN_SECONDS": "5"}, "SALESOPS_POST_CALL_RUN_SECONDS='5': expected"),
        ({"SALESOPS_POST_CALL_RUN_SECONDS": "15"}, "must be shorter than a run's 15 s"),
        (
            {"SALESOPS_POST_CALL_WARM_HOURS": "always", "SALESOPS_POST_CALL_IDLE_SECONDS": "0"},
            "cannot keep runs warm",
        ),
    ],
)
def test_the_environment_is_read_and_refused_naming_the_settings(monkeypatch, env, reason):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=reason) as raised:
        configured_lane_settings()
    assert "SALESOPS_POST_CALL" in str(raised.value)


def test_the_defaults_one_run_of_four_lanes_warm_through_working_hours(monkeypatch):
    monkeypatch.delenv("SALESOPS_POST_CALL_WARM_HOURS")
    settings = configured_lane_settings()
    assert (settings.lanes, settings.runs, settings.idle_seconds) == (4, 1, 20.0)
    assert settings.warm_hours.spec == "08:00-20:00"


def test_a_lane_count_of_0_in_the_resource_is_refused_not_taken_for_unset(monkeypatch):
    from salesops_pipeline.resources import InboxResource

    with pytest.raises(SettingError, match="lanes must be a whole number of at least 1"):
        InboxResource(lanes=0).lane_settings()
    with pytest.raises(SettingError, match="runs must be a whole number from 1"):
        InboxResource(runs=0).lane_settings()
