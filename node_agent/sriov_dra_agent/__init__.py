"""The sriov-dra node agent: discovery, ResourceSlices, kubelet plugin, VF programming, attach.

By role: :mod:`~sriov_dra_agent.kubelet` (the DRA plugin, prepare/unprepare, CDI,
checkpoint), :mod:`~sriov_dra_agent.vf` (discovery and the VF lifecycle over a
backend: program, restore), :mod:`~sriov_dra_agent.attach` (the OCI hook and the
VF's move into a pod's netns, IPAM) and :mod:`~sriov_dra_agent.cluster` (claims
watched and reconciled, NADs, slices, status, Events); :mod:`~sriov_dra_agent.main`
wires them together.
"""
