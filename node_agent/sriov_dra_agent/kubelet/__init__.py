"""The kubelet side: the DRA gRPC plugin, prepare/unprepare, CDI specs and the checkpoint."""
