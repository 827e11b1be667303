"""The node side: discovering VFs and their lifecycle (program, restore), over a backend."""
