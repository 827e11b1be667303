"""client-go's leader-election rules, decided without a cluster."""

from __future__ import annotations

import datetime

import pytest
from sriov_dra.errors import InvalidSetting
from sriov_dra.leader_election import (
    ElectionTiming,
    LeaseRecord,
    acquired_or_renewed,
    held_by_other,
    lost_leadership,
    observe,
    released,
)

T0 = datetime.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=datetime.UTC)
TIMING = ElectionTiming(lease_duration=15, renew_deadline=10, retry_period=2)


def held(holder: str, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(
        holder=holder, duration_seconds=15, acquire_time=T0, renew_time=T0, transitions=transitions
    )


def test_a_missing_lease_is_taken_with_no_transition() -> None:
    record = acquired_or_renewed(None, "a", TIMING, T0)
    assert (record.holder, record.duration_seconds, record.transitions) == ("a", 15, 0)
    assert record.acquire_time == record.renew_time == T0


def test_another_holder_keeps_the_lease_until_it_lapses_on_our_clock() -> None:
    seen = observe(None, held("b"), now=100.0)
    assert held_by_other(seen, "a", now=114.9)
    assert not held_by_other(seen, "a", now=115.0)


def test_the_clock_restarts_only_when_the_record_changes() -> None:
    first = observe(None, held("b"), now=100.0)
    assert observe(first, held("b"), now=110.0).changed_at == 100.0
    renewed = held("b").model_copy(update={"renew_time": T0 + datetime.timedelta(seconds=2)})
    assert observe(first, renewed, now=110.0).changed_at == 110.0


def test_skewed_timestamps_in_the_record_are_not_trusted() -> None:
    # The holder's renewTime says a year ago; what counts is when we saw it change.
    stale = held("b").model_copy(update={"renew_time": T0 - datetime.timedelta(days=365)})
    assert held_by_other(observe(None, stale, now=5.0), "a", now=6.0)


def test_our_own_or_an_empty_holder_is_never_held_by_other() -> None:
    assert not held_by_other(observe(None, held("a"), now=0.0), "a", now=1.0)
    assert not held_by_other(observe(None, held(""), now=0.0), "a", now=1.0)


def test_taking_over_counts_a_transition_and_renewing_does_not() -> None:
    later = T0 + datetime.timedelta(seconds=20)
    taken = acquired_or_renewed(held("b", transitions=3), "a", TIMING, later)
    assert (taken.holder, taken.transitions, taken.acquire_time) == ("a", 4, later)
    renewed = acquired_or_renewed(taken, "a", TIMING, later + datetime.timedelta(seconds=2))
    assert (renewed.transitions, renewed.acquire_time) == (4, later)
    assert renewed.renew_time == later + datetime.timedelta(seconds=2)


def test_release_hands_back_only_our_own_lease() -> None:
    record = released(held("a", transitions=2), "a", T0)
    assert record is not None
    assert (record.holder, record.duration_seconds, record.transitions) == ("", 1, 2)
    assert released(held("b"), "a", T0) is None


def test_a_leader_steps_down_at_the_renew_deadline() -> None:
    assert not lost_leadership(last_renewed=50.0, timing=TIMING, now=59.9)
    assert lost_leadership(last_renewed=50.0, timing=TIMING, now=60.0)


def test_spec_round_trip_in_the_api_servers_format() -> None:
    spec = held("a", transitions=1).to_spec()
    assert spec["renewTime"] == "2026-12-03T10:00:00.123456Z"
    assert LeaseRecord.from_spec(spec) == held("a", transitions=1)
    assert LeaseRecord.from_spec(None) == LeaseRecord()
    assert LeaseRecord.from_spec({"renewTime": "not a time"}).renew_time is None


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "field"),
    [
        (15, 10, 0, "retry_period"),
        (15, 2, 2, "renew_deadline"),
        (10, 10, 2, "lease_duration"),
    ],
)
def test_timings_that_could_let_two_lead_are_refused(
    lease: float, renew: float, retry: float, field: str
) -> None:
    with pytest.raises(InvalidSetting) as caught:
        ElectionTiming(lease_duration=lease, renew_deadline=renew, retry_period=retry)
    assert caught.value.field == field
    assert caught.value.fix
