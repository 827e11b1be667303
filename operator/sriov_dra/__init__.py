"""sriov-dra: the pure, typed core shared by the operator and the node agent.

Nothing in this package performs I/O or imports kopf, pyroute2 or grpc; the
shells in ``sriov_dra_operator`` and ``sriov_dra_agent`` call into it.
"""
