"""Latency samples as the benches print them: percentiles and the ratio table."""

from __future__ import annotations


def percentile(samples: list[float], q: float) -> float:
    """The sample at quantile ``q`` (nearest rank; 0.5 is the p50 the ratios use)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_ratio_table(
    heading: str, first_column: str, rows: list[tuple[str, list[float]]], baseline: float
) -> None:
    """``heading``, then per row its p50, p99 (ms) and p50 as a multiple of ``baseline``."""
    print(heading)
    print(f"{first_column:<40} {'p50':>8} {'p99':>8} {'ratio':>7}")
    for name, samples in rows:
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        print(f"{name:<40} {p50:8.2f} {p99:8.2f} {p50 / baseline:7.2f}")
