"""A stand-in for kubernetes-sigs/dra-example-driver: DRA driver ``gpu.example.com`` (test world).

The Go driver's ``demo/resource-alignment`` asks for a VF and a GPU of DeviceClass
``gpu.example.com`` on the same ``resource.kubernetes.io/pcieRoot``, and expects the
example driver to have set ``GPU_DEVICE_*`` in the container. That driver is not
available here (no Go module proxy for it), so this module plays it, for the dev
cluster only; it never ships in the product.

It is a real kubelet DRA plugin: the agent's :class:`KubeletPlugin` (registration
socket + DRA gRPC service, v1 and v1beta1) with a preparer of its own. Per node it
publishes one ResourceSlice with one GPU per PCIe root complex it finds under
``<sysfs>/devices/pci*`` (on a dev-cluster node: the simulated NIC's tree, so every
PF's root has a GPU), and prepares a claim by writing a CDI spec whose device sets
``GPU_DEVICE_<n>=<gpu>`` for the n-th GPU of the claim.

It runs as a DaemonSet of the driver's own image (:func:`manifests`), this file
mounted from the checkout: ``python example_gpu_driver.py --node-name $(NODE_NAME)``.
It imports nothing of ``sriov_dra_devcluster``, which is not in the image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any, Final

from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import SriovDraError
from sriov_dra.jsonlog import configure
from sriov_dra_agent.atomic_file import remove_durably, write_atomically
from sriov_dra_agent.kubelet.cdi import minimum_cdi_version
from sriov_dra_agent.kubelet.plugin import KubeletPlugin, KubeletPluginConfig, PreparedDevice
from sriov_dra_kube.client import KubeApi

logger = logging.getLogger("example_gpu_driver")

DRIVER: Final = "gpu.example.com"
NAMESPACE: Final = "example-gpu-driver"
CDI_KIND: Final = f"{DRIVER}/gpu"
PCIE_ROOT_ATTRIBUTE: Final = "resource.kubernetes.io/pcieRoot"
ENV_PREFIX: Final = "GPU_DEVICE_"
MODULE_MOUNT: Final = "/opt/example-gpu-driver/example_gpu_driver.py"
SIM_ROOT: Final = "/run/sriov-dra-sim"
"""Where the dev cluster's simulated NICs keep their sysfs trees (``<node>/sys``)."""
_PCIE_ROOT: Final = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")


class NotOurClaim(SriovDraError):
    """The kubelet asked for a claim this node's GPUs do not serve; names claim and fix."""


# --- pure: devices, slice, CDI spec, install manifests --------------------------------------


def pcie_roots(sysfs_root: Path) -> list[str]:
    """The PCIe root complexes under ``<sysfs_root>/devices`` (``pci0000:3a`` ...), sorted."""
    devices = sysfs_root / "devices"
    if not devices.is_dir():
        return []
    return sorted(p.name for p in devices.iterdir() if _PCIE_ROOT.match(p.name))


def gpu_devices(node: str, roots: list[str]) -> list[dict[str, Any]]:
    """One GPU per PCIe root: ``gpu-<i>`` with its root as ``resource.kubernetes.io/pcieRoot``."""
    return [
        {
            "name": f"gpu-{index}",
            "attributes": {
                PCIE_ROOT_ATTRIBUTE: {"string": root},
                "index": {"int": index},
                "model": {"string": "EXAMPLE-GPU"},
                "uuid": {"string": f"gpu-{node}-{index}"},
            },
        }
        for index, root in enumerate(roots)
    ]


def resource_slice(node: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """The node's one ResourceSlice of ``gpu.example.com``."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{DRIVER}"},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def allocated_gpus(claim: dict[str, Any], node: str) -> list[dict[str, Any]]:
    """The claim's allocation results of this driver on ``node``, in allocation order."""
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get(
        "results"
    ) or []
    return [r for r in results if r.get("driver") == DRIVER and r.get("pool") == node]


def cdi_spec(claim_uid: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A CDI spec with one device per GPU result, setting ``GPU_DEVICE_<n>=<gpu>``.

    Its ``cdiVersion`` is the lowest that accepts it, as the agent's: a device name that
    starts with a digit (a claim UID may) needs 0.5.0, and containerd refuses the whole
    spec otherwise ("unresolvable CDI devices").
    """
    spec: dict[str, Any] = {
        "cdiVersion": "",
        "kind": CDI_KIND,
        "devices": [
            {
                "name": f"{claim_uid}-{result['device']}",
                "containerEdits": {"env": [f"{ENV_PREFIX}{n}={result['device']}"]},
            }
            for n, result in enumerate(results)
        ],
    }
    spec["cdiVersion"] = minimum_cdi_version(spec)
    return spec


def spec_path(cdi_dir: Path, claim_uid: str) -> Path:
    """Where a claim's CDI spec lives."""
    return cdi_dir / f"{DRIVER}-gpu_{claim_uid}.json"


def manifests(image: str, module_path: Path) -> list[dict[str, Any]]:
    """Namespace, RBAC, DeviceClass and DaemonSet that install this driver on every node."""
    labels = {"app": "example-gpu-driver"}
    rules = [
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceslices"],
            "verbs": ["list", "create", "update", "delete"],
        },
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]},
    ]
    host_dirs = {
        "plugins-registry": "/var/lib/kubelet/plugins_registry",
        "plugins": "/var/lib/kubelet/plugins",
        "cdi": "/var/run/cdi",
        "sim-nic": SIM_ROOT,
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "example-gpu-driver", "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "example-gpu-driver"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "example-gpu-driver"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "example-gpu-driver",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "example-gpu-driver", "namespace": NAMESPACE}
            ],
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": DRIVER},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER}'"}}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "example-gpu-driver", "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "example-gpu-driver",
                        "terminationGracePeriodSeconds": 10,
                        "containers": [
                            {
                                "name": "plugin",
                                "image": image,
                                "command": ["python3", MODULE_MOUNT],
                                "args": [
                                    "--node-name=$(NODE_NAME)",
                                    f"--sysfs-root={SIM_ROOT}/$(NODE_NAME)/sys",
                                ],
                                "env": [
                                    {
                                        "name": "NODE_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                    }
                                ],
                                "volumeMounts": [
                                    *({"name": n, "mountPath": p} for n, p in host_dirs.items()),
                                    {"name": "module", "mountPath": MODULE_MOUNT, "readOnly": True},
                                ],
                            }
                        ],
                        "volumes": [
                            *(
                                {"name": n, "hostPath": {"path": p, "type": "DirectoryOrCreate"}}
                                for n, p in host_dirs.items()
                            ),
                            {
                                "name": "module",
                                "hostPath": {"path": str(module_path), "type": "File"},
                            },
                        ],
                    },
                },
            },
        },
    ]


# --- the plugin --------------------------------------------------------------------------


class GpuPreparer:
    """Prepares a claim's GPUs of this node: a CDI spec per claim, removed on unprepare."""

    def __init__(self, api: KubeApi, node: str, cdi_dir: Path) -> None:
        self.api = api
        self.node = node
        self.cdi_dir = cdi_dir

    async def prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        """Write the claim's CDI spec; one PreparedDevice per GPU of this node."""
        current = await self.api.get_claim(claim.namespace, claim.name)
        if current is None or current["metadata"].get("uid") != claim.uid:
            raise NotOurClaim(
                f"claim {claim} is gone or was replaced",
                field="metadata.uid",
                fix="let the kubelet retry with the claim that exists now",
            )
        results = allocated_gpus(current, self.node)
        if not results:
            raise NotOurClaim(
                f"claim {claim} has no {DRIVER} device allocated on node {self.node}",
                field="status.allocation.devices.results",
                fix="allocate the claim's GPU on the node its pod runs on",
            )
        spec = cdi_spec(claim.uid, results)
        self.cdi_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(spec_path(self.cdi_dir, claim.uid), json.dumps(spec).encode(), mode=0o644)
        logger.info(
            "prepared GPUs",
            extra={"claim": claim.ref(), "uid": claim.uid, "node": self.node,
                   "devices": [r["device"] for r in results]},
        )  # fmt: skip
        return [
            PreparedDevice(
                request_names=(str(result["request"]),),
                pool_name=self.node,
                device_name=str(result["device"]),
                cdi_device_ids=(f"{CDI_KIND}={device['name']}",),
            )
            for result, device in zip(results, spec["devices"], strict=True)
        ]

    async def unprepare(self, claim: ClaimRef) -> None:
        """Remove the claim's CDI spec (idempotent)."""
        remove_durably(spec_path(self.cdi_dir, claim.uid))
        logger.info(
            "unprepared GPUs", extra={"claim": claim.ref(), "uid": claim.uid, "node": self.node}
        )


async def _publish(api: KubeApi, body: dict[str, Any]) -> None:
    node = body["spec"]["nodeName"]
    existing = await api.list_slices(node=node, driver=DRIVER)
    for stale in existing[1:]:
        await api.delete_slice(stale["metadata"]["name"])
    if existing:
        body["metadata"]["resourceVersion"] = existing[0]["metadata"]["resourceVersion"]
        body["metadata"]["name"] = existing[0]["metadata"]["name"]
        await api.replace_slice(body["metadata"]["name"], body)
    else:
        await api.create_slice(body)


async def run(node: str, sysfs_root: Path, cdi_dir: Path) -> None:
    """Publish the node's GPUs, serve the kubelet until SIGTERM, then withdraw both."""
    api = await KubeApi.from_kubeconfig(None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    devices = gpu_devices(node, pcie_roots(sysfs_root))
    plugin = KubeletPlugin(GpuPreparer(api, node, cdi_dir), KubeletPluginConfig(DRIVER))
    await plugin.start()
    body = resource_slice(node, devices)
    await _publish(api, body)
    logger.info(
        "published GPUs",
        extra={"node": node, "devices": [(d["name"], d["attributes"][PCIE_ROOT_ATTRIBUTE])
                                         for d in devices]},
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        await plugin.stop()
        for item in await api.list_slices(node=node, driver=DRIVER):
            await api.delete_slice(item["metadata"]["name"])
        await api.close()


def main() -> None:
    """``python example_gpu_driver.py --node-name N [--sysfs-root DIR] [--cdi-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="example_gpu_driver")
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""), required=False)
    parser.add_argument("--sysfs-root", type=Path, default=Path("/sys"))
    parser.add_argument("--cdi-dir", type=Path, default=Path("/var/run/cdi"))
    args = parser.parse_args()
    if not args.node_name:
        parser.error("--node-name (or env NODE_NAME) is required")
    configure("INFO")
    asyncio.run(run(args.node_name, args.sysfs_root, args.cdi_dir))


if __name__ == "__main__":
    main()
