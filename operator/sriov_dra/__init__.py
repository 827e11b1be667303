"""sriov-dra: the pure, typed core shared by the operator and the node agent.

Nothing in this package performs I/O but the command dispatcher (:mod:`.cli`)
and the log set-up (:mod:`.jsonlog`), and nothing imports kopf,
kubernetes_asyncio, pyroute2 or grpc; the shells in ``sriov_dra_operator`` and
``sriov_dra_agent`` call into it.
"""
