"""Fixtures for tests on real kernel objects: simulated nodes, pod netns, host-local.

Every name carries a per-test random prefix so parallel runs never collide, and
every fixture removes what it made. Missing root or a missing host-local FAIL
with the fix; they never skip.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netns_helpers import Pod
from pyroute2 import netns
from sriov_dra_agent.attach.pod_network import PodNetwork
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_agent.vf.lifecycle import VfLifecycle

HOST_LOCAL = Path("/usr/lib/cni/host-local")


@pytest.fixture(autouse=True)
def _needs_root_and_cni() -> None:
    if os.geteuid() != 0:
        pytest.fail("netns tests need root (network namespaces, veth, bridges); run as root")
    if not os.access(HOST_LOCAL, os.X_OK):
        pytest.fail(f"{HOST_LOCAL} missing: run .ci/setup (installs containernetworking-plugins)")


@pytest.fixture
def prefix() -> str:
    """A prefix unique to this test for netns and simulated-NIC names."""
    return "t" + secrets.token_hex(3)


@pytest.fixture
def make_pod() -> Iterator[Callable[[], Pod]]:
    """Start pods (``unshare --net sleep``); the netns dies with the process."""
    pods: list[Pod] = []

    def make() -> Pod:
        proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        own = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == own:
            # unshare has not switched yet.
            if time.monotonic() > deadline:
                raise RuntimeError("unshare did not create a netns")
            time.sleep(0.01)
        pod = Pod(proc)
        pods.append(pod)
        return pod

    yield make
    for pod in pods:
        pod.kill()


@pytest.fixture
def make_node(prefix: str, tmp_path: Path) -> Iterator[Callable[..., SimulatedNic]]:
    """Build simulated nodes (sharing one fabric); destroyed after the test."""
    nics: list[SimulatedNic] = []

    def make(name: str = "n1", pfs: tuple[SimPf, ...] = (SimPf("simpf0", 8, 4),)) -> SimulatedNic:
        nic = SimulatedNic(name, prefix=prefix, root=tmp_path / "sim")
        nics.append(nic)
        nic.build(pfs)
        return nic

    yield make
    for nic in nics:
        nic.destroy()
    leftover = [ns for ns in netns.listnetns() if ns.startswith(prefix)]
    assert leftover == [], f"netns left behind: {leftover}"


@pytest.fixture
def make_lifecycle() -> Iterator[Callable[..., VfLifecycle]]:
    """VfLifecycle objects, their PodNetwork closed after the test (a cached host netns
    socket would keep a destroyed node's netns alive)."""
    made: list[VfLifecycle] = []

    def make(backend: SimulatedBackend, state_dir: Path) -> VfLifecycle:
        lifecycle = VfLifecycle(backend, PodNetwork(backend), state_dir=state_dir)
        made.append(lifecycle)
        return lifecycle

    yield make
    for lifecycle in made:
        lifecycle.pods.close()


@pytest.fixture
def lifecycle(
    make_node: Callable[..., SimulatedNic],
    make_lifecycle: Callable[..., VfLifecycle],
    tmp_path: Path,
) -> VfLifecycle:
    """The VF lifecycle over one simulated node ``n1`` with 4 VFs on ``simpf0``."""
    return make_lifecycle(SimulatedBackend(make_node()), tmp_path / "state-n1")
