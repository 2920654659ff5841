"""The parts of `scripts/accuracy.py` (docs/accuracy.md): one table per engine, each row one
figure of ours beside the engine's own, its CLI's or GNU `du`'s for the same object.

common: the table, one in-process sample, the rows every engine shares (images, totals,
counts, logs, volumes, `docker system df`'s container and volume sizes); overlay2: the
graphdriver's scanned figures (Docker 20.10 and 26.1); containerd: the containerd image
store's (snapshots, their owners, the content store)."""
