"""Device health: PF link watching, and what it feeds (slice taints, the kubelet's stream)."""
