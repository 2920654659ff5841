"""Read-only sources: the Engine API and the filesystem. Nothing here imports upward."""
