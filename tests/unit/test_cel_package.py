"""The ``cel`` package is loaded without its interactive command line, and still evaluates."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from sriov_dra.cel_selectors import DeviceInput, compile_selector
device = DeviceInput({"name": "d0", "attributes": {"x": {"int": 1}}}, driver="d")
print(compile_selector('device.attributes["d"].x == 1').evaluate(device))
print(sorted(m for m in ("typer", "prompt_toolkit", "click", "pygments") if m in sys.modules))
"""


def test_selectors_evaluate_without_the_cli_and_its_libraries() -> None:
    # A fresh interpreter: this test process may have imported them for its own reasons.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["True", "[]"]
