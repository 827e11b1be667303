"""The host-side hook script: identity of the agent process, quoting, atomic install."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sriov_dra_agent.attach.host_hook import (
    HostHookError,
    install_host_hook,
    process_start_time,
    render_host_hook,
)


def stat_line(comm: str, start: int) -> str:
    # Fields 3.. of /proc/<pid>/stat; starttime is field 22.
    rest = ["S", *[str(n) for n in range(4, 22)], str(start), "99", "100"]
    return f"4242 ({comm}) {' '.join(rest)}\n"


@pytest.mark.parametrize(
    "comm",
    ["python3.11", "a b", "x) (y", ")"],
    ids=["plain", "space", "parens", "lone-paren"],
)
def test_start_time_is_field_22_whatever_the_command_name(comm: str) -> None:
    assert process_start_time(stat_line(comm, 1892400)) == 1892400


def test_start_time_of_this_process_is_stable() -> None:
    text = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert process_start_time(text) == process_start_time(Path("/proc/self/stat").read_text())


def test_script_names_the_agent_and_quotes_the_executable() -> None:
    script = render_host_hook(
        agent_pid=31337, agent_start_time=777, executable="/opt/my dir/sriov-dra"
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "agent_pid=31337" in lines
    assert "agent_start_time=777" in lines
    assert lines[-1] == (
        'exec nsenter --target "$agent_pid" --mount -- \'/opt/my dir/sriov-dra\' "$@"'
    )


def test_install_is_executable_and_replaces_the_previous_inode(tmp_path: Path) -> None:
    path = tmp_path / "plugins" / "sriov-dra-hook"
    install_host_hook(path, executable="/usr/local/bin/sriov-dra")
    first = path.stat()
    script = install_host_hook(path, executable="/usr/local/bin/sriov-dra")
    second = path.stat()
    assert stat.S_IMODE(second.st_mode) == 0o755
    assert second.st_ino != first.st_ino
    assert path.read_text() == script
    assert f"agent_pid={os.getpid()}" in script.splitlines()
    assert [p.name for p in path.parent.iterdir()] == ["sriov-dra-hook"]


def test_unwritable_path_names_the_flag_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HostHookError) as info:
        install_host_hook(blocker / "sriov-dra-hook", executable="/usr/local/bin/sriov-dra")
    assert info.value.field == "--hook-path"
    assert info.value.fix == (
        "point --hook-path at a writable hostPath mount "
        "(the DaemonSet uses the kubelet plugins directory)"
    )
