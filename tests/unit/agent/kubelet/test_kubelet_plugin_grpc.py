"""The kubelet plugin over real gRPC on real unix sockets, with this test playing the kubelet."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import DeviceBusy
from sriov_dra_agent.kubelet.plugin import (
    KubeletPlugin,
    KubeletPluginConfig,
    PreparedDevice,
    RegistrationStatus,
)
from sriov_dra_agent.kubelet.socket_files import SocketPathError
from sriov_dra_agent.proto import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    pluginregistration_v1_pb2,
    pluginregistration_v1_pb2_grpc,
)

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
VERSIONS = [
    pytest.param((dra_v1_pb2, dra_v1_pb2_grpc), id="v1"),
    pytest.param((dra_v1beta1_pb2, dra_v1beta1_pb2_grpc), id="v1beta1"),
]


class RecordingPreparer:
    """A ClaimPreparer that records calls, can fail per claim and can be held at a gate."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.failures: dict[str, Exception] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}

    async def _run(self, action: str, claim: ClaimRef) -> None:
        self.events.append(("enter", action, claim.uid))
        self.entered.setdefault(claim.uid, asyncio.Event()).set()
        gate = self.gates.get(claim.uid)
        if gate is not None:
            await gate.wait()
        self.events.append(("exit", action, claim.uid))
        if claim.uid in self.failures:
            raise self.failures[claim.uid]

    async def prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        await self._run("prepare", claim)
        return [
            PreparedDevice(
                request_names=("vf",),
                pool_name="node-a",
                device_name=f"dev-{claim.uid}",
                cdi_device_ids=(f"{DRIVER}/vf={claim.uid}-dev",),
            )
        ]

    async def unprepare(self, claim: ClaimRef) -> None:
        await self._run("unprepare", claim)


@pytest.fixture
def socket_root() -> Iterator[Path]:
    # pytest's tmp_path is too long for a unix socket address under the driver's directory.
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield root
    shutil.rmtree(root)


@pytest.fixture
def config(socket_root: Path) -> KubeletPluginConfig:
    return KubeletPluginConfig(
        registrar_dir=socket_root / "plugins_registry", plugins_dir=socket_root / "plugins"
    )


@pytest.fixture
def preparer() -> RecordingPreparer:
    return RecordingPreparer()


@pytest.fixture
async def plugin(
    config: KubeletPluginConfig, preparer: RecordingPreparer
) -> AsyncIterator[KubeletPlugin]:
    plugin = KubeletPlugin(preparer, config)
    await plugin.start()
    yield plugin
    for gate in preparer.gates.values():
        gate.set()
    await plugin.stop(grace=5)


def claim_msg(pb2: ModuleType, uid: str, name: str = "", namespace: str = "ns1") -> Any:
    return pb2.Claim(namespace=namespace, uid=uid, name=name or f"claim-{uid}")


async def call_dra(
    config: KubeletPluginConfig, versions: tuple[ModuleType, ModuleType], method: str, **kw: Any
) -> Any:
    pb2, pb2_grpc = versions
    timeout = kw.pop("timeout", 10)
    async with grpc.aio.insecure_channel(f"unix://{config.dra_socket}") as channel:
        stub = pb2_grpc.DRAPluginStub(channel)
        request_type = getattr(pb2, f"{method}Request")
        return await getattr(stub, method)(request_type(**kw), timeout=timeout)


async def test_registration_answers_get_info_and_records_the_status(
    config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    seen: list[RegistrationStatus] = []
    plugin = KubeletPlugin(preparer, config, on_registration=seen.append)
    await plugin.start()
    try:
        assert config.registration_socket == config.registrar_dir / f"{DRIVER}-reg.sock"
        assert config.dra_socket == config.plugins_dir / DRIVER / "dra.sock"
        async with grpc.aio.insecure_channel(f"unix://{config.registration_socket}") as channel:
            stub = pluginregistration_v1_pb2_grpc.RegistrationStub(channel)
            info = await stub.GetInfo(pluginregistration_v1_pb2.InfoRequest(), timeout=10)
            assert (info.type, info.name, info.endpoint, list(info.supported_versions)) == (
                "DRAPlugin",
                DRIVER,
                str(config.dra_socket),
                ["v1.DRAPlugin", "v1beta1.DRAPlugin"],
            )
            assert plugin.registration_status is None

            await stub.NotifyRegistrationStatus(
                pluginregistration_v1_pb2.RegistrationStatus(plugin_registered=True), timeout=10
            )
            assert await plugin.wait_registered() == RegistrationStatus(True, "")

            await stub.NotifyRegistrationStatus(
                pluginregistration_v1_pb2.RegistrationStatus(
                    plugin_registered=False, error="endpoint already in use"
                ),
                timeout=10,
            )
            assert plugin.registration_status == RegistrationStatus(
                False, "endpoint already in use"
            )
            assert seen == [
                RegistrationStatus(True, ""),
                RegistrationStatus(False, "endpoint already in use"),
            ]
    finally:
        await plugin.stop(grace=None)


@pytest.mark.parametrize("versions", VERSIONS)
async def test_prepare_answers_every_claim_and_reports_errors_per_claim(
    plugin: KubeletPlugin,
    config: KubeletPluginConfig,
    preparer: RecordingPreparer,
    versions: tuple[ModuleType, ModuleType],
) -> None:
    pb2 = versions[0]
    preparer.failures["busy"] = DeviceBusy(
        "VF 0000:08:00.2 is prepared for claim ns1/other",
        field="allocation",
        fix="wait for the other claim to be released",
    )
    preparer.failures["crash"] = RuntimeError("netlink socket closed")

    response = await call_dra(
        config,
        versions,
        "NodePrepareResources",
        claims=[
            claim_msg(pb2, "ok"),
            claim_msg(pb2, "busy"),
            claim_msg(pb2, "crash"),
            claim_msg(pb2, "nameless", name="", namespace=""),
        ],
    )

    assert sorted(response.claims) == ["busy", "crash", "nameless", "ok"]
    ok = response.claims["ok"]
    assert ok.error == ""
    assert [
        (list(d.request_names), d.pool_name, d.device_name, list(d.cdi_device_ids))
        for d in ok.devices
    ] == [(["vf"], "node-a", "dev-ok", [f"{DRIVER}/vf=ok-dev"])]
    assert response.claims["busy"].error == (
        "prepare claim ns1/claim-busy (busy): allocation: VF 0000:08:00.2 is prepared for "
        "claim ns1/other; fix: wait for the other claim to be released"
    )
    assert list(response.claims["busy"].devices) == []
    assert response.claims["crash"].error == (
        "prepare claim ns1/claim-crash (crash): internal error: RuntimeError: netlink socket closed"
    )
    assert response.claims["nameless"].error == (
        "prepare claim /claim-nameless (nameless): the request lacks namespace"
    )
    assert sorted(uid for kind, _, uid in preparer.events if kind == "enter") == [
        "busy",
        "crash",
        "ok",
    ]


@pytest.mark.parametrize("versions", VERSIONS)
async def test_unprepare_answers_every_claim_and_reports_errors_per_claim(
    plugin: KubeletPlugin,
    config: KubeletPluginConfig,
    preparer: RecordingPreparer,
    versions: tuple[ModuleType, ModuleType],
) -> None:
    pb2 = versions[0]
    preparer.failures["stuck"] = DeviceBusy(
        "VF 0000:08:00.3 is still in netns net:[4026532001]",
        fix="retry after the pod's network namespace is gone",
    )

    response = await call_dra(
        config,
        versions,
        "NodeUnprepareResources",
        claims=[claim_msg(pb2, "a"), claim_msg(pb2, "stuck"), claim_msg(pb2, "")],
    )

    assert {uid: entry.error for uid, entry in response.claims.items()} == {
        "a": "",
        "stuck": "unprepare claim ns1/claim-stuck (stuck): VF 0000:08:00.3 is still in netns "
        "net:[4026532001]; fix: retry after the pod's network namespace is gone",
        "": "unprepare claim ns1/claim- (): the request lacks uid",
    }
    assert [e for e in preparer.events if e[0] == "enter"] == [
        ("enter", "unprepare", "a"),
        ("enter", "unprepare", "stuck"),
    ]


@pytest.mark.parametrize("versions", VERSIONS)
async def test_a_claim_listed_twice_is_prepared_once(
    plugin: KubeletPlugin,
    config: KubeletPluginConfig,
    preparer: RecordingPreparer,
    versions: tuple[ModuleType, ModuleType],
) -> None:
    pb2 = versions[0]
    response = await call_dra(
        config,
        versions,
        "NodePrepareResources",
        claims=[claim_msg(pb2, "dup"), claim_msg(pb2, "dup")],
    )
    assert [d.device_name for d in response.claims["dup"].devices] == ["dev-dup"]
    assert preparer.events == [("enter", "prepare", "dup"), ("exit", "prepare", "dup")]


async def wait_for(predicate: Any, what: str) -> None:
    async def poll() -> None:
        # What we wait for is internal to the plugin under test, which has no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout=10)
    except TimeoutError:
        pytest.fail(f"gave up waiting for {what}")


async def test_calls_for_one_claim_never_interleave(
    plugin: KubeletPlugin, config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    versions = (dra_v1_pb2, dra_v1_pb2_grpc)
    preparer.gates["c1"] = asyncio.Event()
    prepare = asyncio.create_task(
        call_dra(config, versions, "NodePrepareResources", claims=[claim_msg(dra_v1_pb2, "c1")])
    )
    await wait_for(lambda: ("enter", "prepare", "c1") in preparer.events, "prepare to start")
    unprepare = asyncio.create_task(
        call_dra(
            config,
            (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc),
            "NodeUnprepareResources",
            claims=[claim_msg(dra_v1beta1_pb2, "c1")],
        )
    )
    await wait_for(lambda: plugin.locks.users("c1") == 2, "unprepare to queue on the claim lock")
    assert preparer.events == [("enter", "prepare", "c1")]

    preparer.gates["c1"].set()
    await asyncio.gather(prepare, unprepare)

    assert preparer.events == [
        ("enter", "prepare", "c1"),
        ("exit", "prepare", "c1"),
        ("enter", "unprepare", "c1"),
        ("exit", "unprepare", "c1"),
    ]
    assert plugin.locks.held() == []


async def test_different_claims_proceed_in_parallel(
    plugin: KubeletPlugin, config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    # c1 can only finish once c2 has started: a global lock would deadlock here.
    preparer.gates["c1"] = preparer.entered.setdefault("c2", asyncio.Event())
    versions = (dra_v1_pb2, dra_v1_pb2_grpc)
    first = asyncio.create_task(
        call_dra(config, versions, "NodePrepareResources", claims=[claim_msg(dra_v1_pb2, "c1")])
    )
    await wait_for(lambda: ("enter", "prepare", "c1") in preparer.events, "c1 to start")
    second = await call_dra(
        config, versions, "NodePrepareResources", claims=[claim_msg(dra_v1_pb2, "c2")]
    )
    assert second.claims["c2"].error == ""
    assert (await first).claims["c1"].error == ""


async def test_a_call_the_kubelet_abandons_still_completes(
    plugin: KubeletPlugin, config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    versions = (dra_v1_pb2, dra_v1_pb2_grpc)
    preparer.gates["slow"] = asyncio.Event()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call_dra(
            config,
            versions,
            "NodePrepareResources",
            claims=[claim_msg(dra_v1_pb2, "slow")],
            timeout=0.3,
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    preparer.gates["slow"].set()
    await wait_for(lambda: ("exit", "prepare", "slow") in preparer.events, "prepare to finish")
    retry = await call_dra(
        config, versions, "NodePrepareResources", claims=[claim_msg(dra_v1_pb2, "slow")]
    )
    assert retry.claims["slow"].error == ""


def make_stale_socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


async def test_stale_sockets_are_replaced_and_removed_on_stop(
    config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    make_stale_socket(config.registration_socket)
    make_stale_socket(config.dra_socket)
    plugin = KubeletPlugin(preparer, config)
    await plugin.start()
    try:
        response = await call_dra(
            config,
            (dra_v1_pb2, dra_v1_pb2_grpc),
            "NodePrepareResources",
            claims=[claim_msg(dra_v1_pb2, "x")],
        )
        assert response.claims["x"].error == ""
    finally:
        await plugin.stop(grace=None)
    assert not config.registration_socket.exists()
    assert not config.dra_socket.exists()


async def test_a_file_that_is_not_a_socket_is_not_deleted(
    config: KubeletPluginConfig, preparer: RecordingPreparer
) -> None:
    config.registrar_dir.mkdir(parents=True)
    config.registration_socket.write_text("someone's file")
    plugin = KubeletPlugin(preparer, config)

    with pytest.raises(SocketPathError) as err:
        await plugin.start()

    assert str(err.value) == (
        f"'{config.registration_socket}' exists and is not a socket; "
        "fix: remove it or configure another path"
    )
    assert config.registration_socket.read_text() == "someone's file"
    assert not config.dra_socket.exists(), "the DRA server started first is stopped again"


async def test_socket_path_longer_than_sun_path_is_refused(preparer: RecordingPreparer) -> None:
    config = KubeletPluginConfig(plugins_dir=Path("/tmp") / ("d" * 80), registrar_dir=Path("/x"))
    with pytest.raises(SocketPathError) as err:
        await KubeletPlugin(preparer, config).start()
    assert str(err.value) == (
        f"socket path '{config.dra_socket}' is 131 bytes, more than the 107 a unix socket "
        "address holds; fix: configure a shorter directory"
    )
    assert not config.plugins_dir.exists()


def test_sockets_default_to_the_kubelet_paths() -> None:
    config = KubeletPluginConfig()
    assert config.registration_socket == Path(
        f"/var/lib/kubelet/plugins_registry/{DRIVER}-reg.sock"
    )
    assert config.dra_socket == Path(f"/var/lib/kubelet/plugins/{DRIVER}/dra.sock")
