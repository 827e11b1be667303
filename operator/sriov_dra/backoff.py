"""Growing retry delays, counted per key (a claim uid).

Something that failed and is retried at once usually fails again: a write the
apiserver refuses, a reconcile that raised. Each failure in a row
doubles that key's delay up to a cap; a success (or the key going away) resets
it. Pure arithmetic: the caller decides when to sleep and what to retry.
"""

from __future__ import annotations


class Backoff:
    """Delays ``base``, ``base*factor``, ... capped at ``cap``, counted per key."""

    def __init__(self, *, base: float, cap: float, factor: float = 2.0) -> None:
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
