"""Errors of the local control plane: each names the component at fault and the fix."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from sriov_dra.errors import SriovDraError


class BinariesMissing(SriovDraError):
    """The Kubernetes binaries are not built or not where they were said to be."""

    reason = "BinariesMissing"


class ComponentFailed(SriovDraError):
    """A control-plane component did not start or did not become healthy.

    Carries the component name and the tail of its log, which the message includes.
    """

    reason = "ComponentFailed"

    def __init__(self, component: str, problem: str, log_file: Path, log_tail: str) -> None:
        self.component = component
        self.log_file = log_file
        self.log_tail = log_tail
        super().__init__(
            f"{component} {problem}",
            field=component,
            fix=f"read {log_file}; `sriov-dra devcluster down` cleans up before a retry",
        )

    def describe(self) -> str:
        """What failed and the fix on the first line, then the tail of the log."""
        source = "details" if str(self.log_file) == "-" else f"last lines of {self.log_file}"
        return f"{self.message}; fix: {self.fix}\n--- {source} ---\n{self.log_tail}"


class KubectlFailed(subprocess.CalledProcessError):
    """kubectl exited non-zero; str() shows the command and kubectl's own stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(returncode, list(cmd), stdout, stderr)

    def __str__(self) -> str:
        args = " ".join(str(c) for c in self.cmd[1:])
        return f"kubectl {args} exited {self.returncode}: {str(self.stderr).strip()}"
