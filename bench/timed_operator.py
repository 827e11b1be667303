"""``sriov-dra operator`` with every allocation decision timed, for bench_scale.py.

The operator has no per-decision metric (its reconcile histogram includes the two
API writes), so this launcher wraps the allocator call the reconciler makes and
appends each call's duration in seconds, one line each, in decision order, to the
file named by ``SRIOV_DRA_BENCH_DECISIONS``. Nothing else is imported or changed:
the process is the operator's, so its RSS is the operator's.

    SRIOV_DRA_BENCH_DECISIONS=/tmp/d.txt python bench/timed_operator.py --kubeconfig K ...
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from sriov_dra.cli import main
from sriov_dra_operator import claims

_out = os.open(
    os.environ["SRIOV_DRA_BENCH_DECISIONS"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
)
_allocate = claims.allocate


def _timed(*args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        return _allocate(*args, **kwargs)
    finally:
        os.write(_out, f"{time.perf_counter() - started:.9f}\n".encode())


claims.allocate = _timed  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(["operator", *sys.argv[1:]]))
