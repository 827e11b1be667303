"""The sriov-dra node agent: discovery, ResourceSlices, kubelet plugin, VF programming, attach."""
