"""Where the checkout's files are, for the dev cluster and the demo (one place)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[3]
"""The checkout: this package lives in ``tests/devcluster/sriov_dra_devcluster``."""
CI: Final = REPO / ".ci"
CRDS: Final = REPO / "crds"
MANIFESTS: Final = REPO / "manifests"
BASE_MANIFESTS: Final = MANIFESTS / "base"
SIMULATED_KUSTOMIZATION: Final = MANIFESTS / "simulated"
HELM_CHART: Final = MANIFESTS / "helm" / "sriov-dra"
SEED_EXAMPLE: Final = MANIFESTS / "examples" / "resourceclaim-vf.yaml"
