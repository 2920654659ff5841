"""docker-storage-exporter: where a Docker host's disk went, for Prometheus."""

__version__ = "0.1.0"
