"""Local development cluster: Kubernetes 1.34 control plane, kwok nodes, simulated SR-IOV hardware glue."""
