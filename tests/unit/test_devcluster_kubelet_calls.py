"""The test world's kubelet side of DRA (NodePrepare/NodeUnprepareResources) against the agent's
real gRPC plugin, in both service versions: every claim gets its answer or its error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import DeviceBusy
from sriov_dra_agent.kubelet.plugin import KubeletPlugin, KubeletPluginConfig
from sriov_dra_agent.kubelet.plugin import PreparedDevice as AgentDevice
from sriov_dra_devcluster.kubelet_plugins import (
    V1,
    V1BETA1,
    Plugin,
    PreparedDevice,
    node_prepare_resources,
    node_unprepare_resources,
)

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
GOOD = ClaimRef("ns1", "good", "uid-good")
BUSY = ClaimRef("ns1", "busy", "uid-busy")


class Preparer:
    """Prepares every claim but BUSY; records what it was asked to unprepare."""

    def __init__(self) -> None:
        self.unprepared: list[ClaimRef] = []

    async def prepare(self, claim: ClaimRef) -> list[AgentDevice]:
        if claim == BUSY:
            raise DeviceBusy("VF 0000:08:00.2 is held", field="claim", fix="wait")
        return [AgentDevice(("vf",), "node-a", "0000-08-00-2", (f"{DRIVER}/vf={claim.uid}",))]

    async def unprepare(self, claim: ClaimRef) -> None:
        self.unprepared.append(claim)


@pytest.fixture
def socket_root() -> Iterator[Path]:
    # pytest's tmp_path is too long for a unix socket address under the driver's directory.
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize("version", [V1, V1BETA1])
async def test_prepare_and_unprepare_through_the_agents_plugin(
    socket_root: Path, version: str
) -> None:
    config = KubeletPluginConfig(
        registrar_dir=socket_root / "plugins_registry", plugins_dir=socket_root / "plugins"
    )
    preparer = Preparer()
    server = KubeletPlugin(preparer, config)
    await server.start()
    try:
        plugin = Plugin(DRIVER, str(config.dra_socket), version, config.registration_socket)
        results = await node_prepare_resources(plugin, [GOOD, BUSY])
        assert results[GOOD.uid].error == ""
        assert results[GOOD.uid].devices == (
            PreparedDevice(("vf",), "node-a", "0000-08-00-2", (f"{DRIVER}/vf=uid-good",)),
        )
        assert results[BUSY.uid].devices == ()
        assert "prepare claim ns1/busy (uid-busy)" in results[BUSY.uid].error
        assert "VF 0000:08:00.2 is held" in results[BUSY.uid].error
        assert await node_unprepare_resources(plugin, [GOOD]) == {GOOD.uid: ""}
        assert preparer.unprepared == [GOOD]
    finally:
        await server.stop(grace=5)
