"""The attach path: the OCI hook, the attach socket, and moving VFs into pod netns with IPAM."""
