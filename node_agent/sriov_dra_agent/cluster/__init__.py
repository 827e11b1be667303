"""The cluster side: claims watched and reconciled, NADs, ResourceSlices, status and Events."""
