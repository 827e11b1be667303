"""Growing retry delays per claim for writes the apiserver refuses.

A refused write (422 Invalid, 403, 5xx) does not go away by itself: retrying it
every 10 s forever only floods the apiserver and the log. Each failure in a
row doubles the claim's delay up to a cap; a reconcile that goes through
resets it.
"""

from __future__ import annotations


class Backoff:
    """Delays ``base``, ``base*factor``, ... capped at ``cap``, counted per key."""

    def __init__(self, *, base: float = 10.0, factor: float = 2.0, cap: float = 300.0) -> None:
        self.base = base
        self.factor = factor
        self.cap = cap
        self._failures: dict[str, int] = {}

    def next_delay(self, key: str) -> float:
        """Record one more failure of ``key``; the seconds to wait before retrying it."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Stop growing the exponent once capped, so it never overflows.
        if self.base * self.factor**failures >= self.cap:
            self._failures[key] = failures
            return self.cap
        return self.base * self.factor**failures

    def reset(self, key: str) -> None:
        """``key`` succeeded (or is gone): its next failure waits ``base`` again."""
        self._failures.pop(key, None)
