"""Names on the wire: the driver, the opaque config kind, and the labels,
annotations and finalizer through which the operator and the agents talk.

These are the contract between the cluster operator and the node agents; both
sides import them from here so that neither can drift.
"""

from typing import Final

DRIVER_NAME: Final = "sriovnetwork.k8snetworkplumbingwg.io"
"""Driver name, DeviceClass name and CDI vendor, as the existing Go driver uses them."""

VFCONFIG_API_VERSION: Final = "sriovnetwork.k8snetworkplumbingwg.io/v1alpha1"
VFCONFIG_KIND: Final = "VfConfig"

PREFIX: Final = "sriovnetwork.k8snetworkplumbingwg.io"

NODE_LABEL: Final = f"{PREFIX}/node"
"""Label on an allocated claim naming its node, so agents watch only their own claims."""

ALLOCATION_ANNOTATION: Final = f"{PREFIX}/allocation"
"""JSON list of allocated VFs (node, PF, VF PCI address, ifName, NAD) written by the operator;
informational, the agent acts on ``status.allocation`` (:mod:`sriov_dra.allocation_record`)."""

RELEASED_CONDITION: Final = "Released"
"""Condition the node agent sets True on its ``status.devices`` entry of a deleted claim's
VF once the VF is detached and reset; the operator hands the VF on only then
(:mod:`sriov_dra.release_signal`)."""

ALLOCATED_CONDITION: Final = "Allocated"
"""Condition the operator sets True on its ``status.devices`` entry of each VF it
allocates, with the allocation; its message names the VF, PF, node, ifName and NAD."""

FINALIZER: Final = f"{PREFIX}/vf-protection"
"""Our finalizer on allocated claims: the VF stays held until the agent released it."""

KUBE_DELETE_PROTECTION: Final = "resource.kubernetes.io/delete-protection"
"""The scheduler's finalizer; with it the claim controller deallocates unused claims."""

DEVICE_CLASS_NAME: Final = DRIVER_NAME

# Device attributes published in ResourceSlices (compatible with the Go driver).
ATTR_VENDOR: Final = f"{PREFIX}/vendor"
ATTR_DEVICE_ID: Final = f"{PREFIX}/deviceID"
ATTR_PF_DEVICE_ID: Final = f"{PREFIX}/pfDeviceID"
ATTR_PCI_ADDRESS: Final = f"{PREFIX}/pciAddress"
ATTR_PF_NAME: Final = f"{PREFIX}/PFName"
ATTR_PF_PCI_ADDRESS: Final = f"{PREFIX}/pfPciAddress"
ATTR_ESWITCH_MODE: Final = f"{PREFIX}/EswitchMode"
ATTR_VF_ID: Final = f"{PREFIX}/vfID"
ATTR_LINK_TYPE: Final = f"{PREFIX}/linkType"
ATTR_RDMA_CAPABLE: Final = f"{PREFIX}/rdmaCapable"
ATTR_CNI_DEVICE_ID: Final = "k8s.cni.cncf.io/deviceID"
ATTR_CNI_RESOURCE_NAME: Final = "k8s.cni.cncf.io/resourceName"
"""For Multus: a NAD's ``k8s.v1.cni.cncf.io/resourceName`` annotation selects VFs carrying it."""
ATTR_PCI_BUS_ID: Final = "resource.kubernetes.io/pciBusID"
ATTR_PCIE_ROOT: Final = "resource.kubernetes.io/pcieRoot"
ATTR_NUMA_NODE: Final = "dra.net/numaNode"
ATTR_SIMULATED: Final = f"{PREFIX}/simulated"
"""True on VFs of the simulated backend, so nobody mistakes them for hardware."""
ATTR_NODE_NAME: Final = f"{PREFIX}/nodeName"
"""Ours, beyond the Go driver's: CEL cannot see a device's pool or node, and a static
claim is allocated before any pod picks a node, so this is how a claim asks for one."""

MAX_ALLOCATION_RESULTS: Final = 32
"""resource.k8s.io's ``AllocationResultsMaxSize``: at most this many results per claim."""
