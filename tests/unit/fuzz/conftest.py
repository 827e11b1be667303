"""Hypothesis profiles of the fuzz tests: ``ci`` (the default) and ``full``.

``ci`` keeps the whole folder under about a minute on 2 cores and is derandomized,
so CI never fails on an example it did not try before; ``full`` tries many more,
freshly drawn each run::

    .venv/bin/python -m pytest tests/unit/fuzz --hypothesis-show-statistics
    HYPOTHESIS_PROFILE=full .venv/bin/python -m pytest tests/unit/fuzz --hypothesis-show-statistics

Every bug these found is kept as an ``@example`` on the test that found it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "full",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
