"""Leader election on a ``coordination.k8s.io/v1`` Lease, decided as client-go decides it.

Two operator replicas run; one leads (watches, allocates, writes), the other
waits. The rules are client-go's ``leaderelection`` package, so that operators
of Kubernetes read our Lease as they read kube-scheduler's:

- A Lease held by someone else is theirs until ``leaseDurationSeconds`` have
  passed *on our clock* since we last saw the record change. Timestamps in the
  record are only written, never trusted: the holder's clock may be skewed.
- A candidate retries every ``retry_period``; the leader renews as often, and
  steps down when it could not renew for ``renew_deadline``, which is shorter
  than the lease, so it stops acting before anyone else may start.
- A leader that stops cleanly releases the Lease (empty holder, duration 1 s),
  so the standby takes over at its next retry instead of after a whole lease.

Pure: the shell (``sriov_dra_operator.leader_election``) reads and writes the
Lease and keeps the clocks.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, model_validator

from sriov_dra.errors import InvalidSetting

JITTER_FACTOR: Final = 1.2
"""client-go's JitterFactor: a candidate's retries are spread over retry_period * 1.2."""


class ElectionTiming(BaseModel):
    """client-go's three durations, in seconds (its defaults: 15, 10 and 2)."""

    model_config = ConfigDict(frozen=True)

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> ElectionTiming:
        if self.retry_period <= 0:
            raise InvalidSetting(
                f"--retry-period must be positive, got {self.retry_period}",
                field="retry_period",
                fix="use client-go's default of 2 seconds",
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise InvalidSetting(
                f"--renew-deadline ({self.renew_deadline}) must exceed {JITTER_FACTOR} x "
                f"--retry-period ({self.retry_period})",
                field="renew_deadline",
                fix="keep renew-deadline well above retry-period (defaults 10 and 2)",
            )
        if self.lease_duration <= self.renew_deadline:
            raise InvalidSetting(
                f"--lease-duration ({self.lease_duration}) must exceed --renew-deadline "
                f"({self.renew_deadline})",
                field="lease_duration",
                fix="a leader must give up before its lease lapses (defaults 15 and 10)",
            )
        return self


class LeaseRecord(BaseModel):
    """The Lease's spec: who holds it, for how long, since when, and how often it changed hands."""

    model_config = ConfigDict(frozen=True)

    holder: str = ""
    duration_seconds: int = 0
    acquire_time: datetime.datetime | None = None
    renew_time: datetime.datetime | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaseRecord:
        """The record in a Lease's ``spec`` as the API server sends it (camelCase JSON)."""
        spec = spec or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=_parse_time(spec.get("acquireTime")),
            renew_time=_parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        """The Lease ``spec`` to write (MicroTime timestamps)."""
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": _format_time(self.acquire_time),
            "renewTime": _format_time(self.renew_time),
            "leaseTransitions": self.transitions,
        }


class Observation(BaseModel):
    """The record as we last saw it, and when it last changed on our monotonic clock."""

    model_config = ConfigDict(frozen=True)

    record: LeaseRecord
    changed_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """What we know after reading ``record`` at ``now``: the clock restarts only on a change."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record=record, changed_at=now)


def held_by_other(observation: Observation, me: str, now: float) -> bool:
    """Someone else holds the Lease and, by our clock, their lease has not lapsed."""
    record = observation.record
    if not record.holder or record.holder == me:
        return False
    return observation.changed_at + record.duration_seconds > now


def acquired_or_renewed(
    current: LeaseRecord | None,
    me: str,
    timing: ElectionTiming,
    wall_now: datetime.datetime,
) -> LeaseRecord:
    """The record to write to take (or keep) the Lease; call only when not held by another."""
    duration = max(1, round(timing.lease_duration))
    if current is None:
        return LeaseRecord(
            holder=me,
            duration_seconds=duration,
            acquire_time=wall_now,
            renew_time=wall_now,
            transitions=0,
        )
    if current.holder == me:
        return current.model_copy(update={"duration_seconds": duration, "renew_time": wall_now})
    return LeaseRecord(
        holder=me,
        duration_seconds=duration,
        acquire_time=wall_now,
        renew_time=wall_now,
        transitions=current.transitions + 1,
    )


def released(current: LeaseRecord, me: str, wall_now: datetime.datetime) -> LeaseRecord | None:
    """The record that hands the Lease back (client-go's ReleaseOnCancel); None if not ours."""
    if current.holder != me:
        return None
    return LeaseRecord(
        holder="",
        duration_seconds=1,
        acquire_time=wall_now,
        renew_time=wall_now,
        transitions=current.transitions,
    )


def lost_leadership(last_renewed: float, timing: ElectionTiming, now: float) -> bool:
    """The leader could not renew for ``renew_deadline``: it must stop acting now."""
    return now - last_renewed >= timing.renew_deadline


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def _format_time(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
