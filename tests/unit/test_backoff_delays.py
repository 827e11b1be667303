"""Per-key retry delays: doubling from the base, capped, reset on success."""

from __future__ import annotations

import pytest
from sriov_dra.backoff import Backoff
from sriov_dra_operator.claims import REFUSED_WRITE_RETRY_FIRST, REFUSED_WRITE_RETRY_MAX


@pytest.mark.parametrize(
    ("failures", "delays"),
    [
        (1, [10.0]),
        (4, [10.0, 20.0, 40.0, 80.0]),
        (9, [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0, 300.0]),
    ],
    ids=["first-failure", "doubling", "capped-at-5-min"],
)
def test_operator_refused_writes_double_up_to_five_minutes(
    failures: int, delays: list[float]
) -> None:
    backoff = Backoff(base=REFUSED_WRITE_RETRY_FIRST, cap=REFUSED_WRITE_RETRY_MAX)
    assert [backoff.next_delay("a") for _ in range(failures)] == delays


@pytest.mark.parametrize(
    ("base", "cap", "factor", "delays"),
    [
        (1.0, 30.0, 2.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (0.5, 1.0, 3.0, [0.5, 1.0, 1.0]),
        (5.0, 5.0, 2.0, [5.0, 5.0]),
    ],
    ids=["agent-reconcile", "factor-3-hits-cap", "base-equals-cap"],
)
def test_delays_grow_by_the_factor_up_to_the_cap(
    base: float, cap: float, factor: float, delays: list[float]
) -> None:
    backoff = Backoff(base=base, cap=cap, factor=factor)
    assert [backoff.next_delay("a") for _ in delays] == delays


def test_keys_are_independent_and_success_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    assert [backoff.next_delay("a") for _ in range(3)] == [1.0, 2.0, 4.0]
    assert backoff.next_delay("b") == 1.0
    backoff.reset("a")
    assert backoff.next_delay("a") == 1.0
    assert backoff.next_delay("b") == 2.0


def test_resetting_an_unknown_key_is_harmless() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    backoff.reset("never-failed")
    assert backoff.next_delay("never-failed") == 1.0


def test_a_long_failing_key_stays_at_the_cap() -> None:
    backoff = Backoff(base=10.0, cap=300.0)
    delays = [backoff.next_delay("a") for _ in range(2000)]
    assert delays[-1] == 300.0
