"""Local development cluster: a Kubernetes 1.34 control plane, kwok-kept nodes, demo glue."""
