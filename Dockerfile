# docker-storage-exporter image. Build (BuildKit):
#   docker build -t docker-storage-exporter .
# Behind a TLS-intercepting proxy, hand in its CA bundle as a secret (never stored in a layer):
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t docker-storage-exporter .
# Run: see docs/deploy.md (socket and / mounted read-only, --path.rootfs=/host).
# BUILD_IMAGE compiles the scan's C walk (it needs gcc and Python's headers) and must carry
# the same Python, at the same path, as BASE_IMAGE, which runs it with no compiler: override
# both together. Built from a BUILD_IMAGE without a compiler, the image walks in Python: the
# same figures, about twice the CPU (build_info's `walk` label says which; so does the build log).
ARG BUILD_IMAGE=python:3.12
ARG BASE_IMAGE=python:3.12-slim

FROM ${BUILD_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY exporter ./exporter
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca; fi \
    && python3 -m venv /opt/exporter \
    && /opt/exporter/bin/pip install --no-compile . \
    && /opt/exporter/bin/pip uninstall -y -q pip setuptools \
    && find /opt/exporter -name '__pycache__' -prune -exec rm -rf {} + \
    && /opt/exporter/bin/python -m compileall -q /opt/exporter/lib \
    && /opt/exporter/bin/python -c 'from exporter.sources import du; print("scan walk:", du.WALK_IMPL)'

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="docker-storage-exporter" \
      org.opencontainers.image.description="Prometheus exporter: where a Docker host's disk went, and when it will be full" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/docker-storage-exporter/docker-storage-exporter" \
      org.opencontainers.image.documentation="https://github.com/docker-storage-exporter/docker-storage-exporter/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/exporter /opt/exporter
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The venv runs on this base: a Python at another version or path fails the build here, and a
# C walk this base cannot load (an older glibc) shows as `scan walk: python`.
RUN ["/opt/exporter/bin/python", "-c", "from exporter.sources import du; print('scan walk:', du.WALK_IMPL)"]
# Root, but run it with every capability dropped except DAC_READ_SEARCH (read the Docker
# root) and a read-only filesystem: docs/deploy.md explains the trade-off.
USER 0:0
EXPOSE 9818
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/opt/exporter/bin/python", "-m", "exporter.healthcheck"]
ENTRYPOINT ["/opt/exporter/bin/docker-storage-exporter"]
