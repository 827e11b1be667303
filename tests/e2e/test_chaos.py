"""The chaos suite's reduced run (30 claims, seed 12) on two real nodes, in ``make test``.

Claims are churned through pods while the operator, agents, kube-apiserver, etcd,
containerd and the NAD are killed, restarted or deleted (``tests/chaos/run.py``).
Asserted: no invariant violated (no device in two claims' allocations, every claim
allocated or warned within its bound, no pod or claim stuck) and nothing left behind
(VF state, host-local leases, pod netns, finalizers). Timings are printed, not asserted.
The full size: ``bench/chaos.py --full`` (README, "The tests").
"""

from __future__ import annotations

import pytest
from chaos.run import Chaos, install
from real_node_cluster import RealNodes

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

SEED = 12
CLAIMS = 30


def test_churn_under_faults_violates_nothing_and_leaks_nothing(real_nodes: RealNodes) -> None:
    install(real_nodes.cluster)
    tally = Chaos(real_nodes.cluster, seed=SEED, size=CLAIMS).run()
    print("\n" + tally.table(SEED, CLAIMS))
    # Every kind of fault planned was injected (an agent kill may find no claim in its phase).
    assert {k for k in tally.faults if not k.startswith("agent")} >= {
        "kube-apiserver restart", "etcd restart", "NAD deleted+recreated", "containerd restart",
    }  # fmt: skip
    assert sum(n for k, n in tally.faults.items() if k.startswith("operator")) == 3
    # The API server held back the status write, so the SIGKILL caught the operator between
    # its metadata write and its status write for sure; the next leader finished the claim.
    assert tally.window_hits == 1
    assert len(tally.failover) == 3
    assert tally.churned >= 2 * CLAIMS
    assert tally.violations == []
    assert tally.leaks == {}
