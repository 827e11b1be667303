"""The host hook script really runs the hook inside the agent container's mount namespace.

A process in a private mount namespace plays the agent's container: the
``sriov-dra`` the script execs exists only on a tmpfs mounted inside it. The
script, run from the host as a container runtime runs a CDI hook, must reach
it with the runtime's arguments and stdin, and must refuse once that process
is gone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sriov_dra_agent.attach.host_hook import process_start_time, render_host_hook

# Stands in for the image's sriov-dra: reports where it ran and what it was given.
FAKE_SRIOV_DRA = """#!/bin/sh
echo "mntns=$(readlink /proc/self/ns/mnt)"
echo "args=$*"
echo "stdin=$(cat)"
"""


class Container:
    """A process in a private mount namespace with ``image`` mounted only inside."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.proc = subprocess.Popen(
            [
                "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount -t tmpfs none "$1" && printf %s "$2" > "$1/sriov-dra" '
                '&& chmod 755 "$1/sriov-dra" && echo ready && exec sleep 300',
                "sh", str(image), FAKE_SRIOV_DRA,
            ],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def mount_ns(self) -> str:
        return os.readlink(f"/proc/{self.pid}/ns/mnt")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    image = tmp_path / "image"
    image.mkdir()
    box = Container(image)
    try:
        yield box
    finally:
        box.stop()


def write_script(path: Path, *, pid: int, start_time: int, executable: str) -> Path:
    path.write_text(
        render_host_hook(agent_pid=pid, agent_start_time=start_time, executable=executable)
    )
    path.chmod(0o755)
    return path


def run(script: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *args], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_hook_runs_in_the_agents_mount_namespace_with_args_and_stdin(
    container: Container, tmp_path: Path
) -> None:
    executable = str(container.image / "sriov-dra")
    assert not Path(executable).exists(), "must exist only inside the container"
    start = process_start_time(Path(f"/proc/{container.pid}/stat").read_text())
    script = write_script(
        tmp_path / "sriov-dra-hook", pid=container.pid, start_time=start, executable=executable
    )
    state = '{"ociVersion": "1.0.2", "id": "c1", "pid": 4242}'
    result = run(script, "hook", "--claim-uid", "u-1", stdin=state)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"mntns={container.mount_ns()}",
        "args=hook --claim-uid u-1",
        f"stdin={state}",
    ]
    assert container.mount_ns() != os.readlink("/proc/self/ns/mnt")


def test_a_gone_or_different_agent_process_fails_with_the_fix(
    container: Container, tmp_path: Path
) -> None:
    executable = str(container.image / "sriov-dra")
    start = process_start_time(Path(f"/proc/{container.pid}/stat").read_text())
    message = (
        "sriov-dra hook: the sriov-dra agent that wrote {script} (pid {pid}) is not running; "
        "fix: check the sriov-dra-agent pod on this node (kubectl -n sriov-dra get pods -o wide)\n"
    )
    # Same pid, other start time: what a reused pid looks like.
    reused = write_script(
        tmp_path / "reused", pid=container.pid, start_time=start + 1, executable=executable
    )
    result = run(reused, "hook")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == message.format(script=reused, pid=container.pid)

    current = write_script(
        tmp_path / "current", pid=container.pid, start_time=start, executable=executable
    )
    container.stop()
    result = run(current, "hook")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == message.format(script=current, pid=container.pid)
