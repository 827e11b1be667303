"""Cluster operator: allocates static ResourceClaims to SR-IOV VFs (Kopf shell over sriov_dra)."""
