"""A remote engine over TLS: a private dockerd with `--tlsverify` on tcp://127.0.0.1, with a CA,
server and client certificates this test makes, and the real exporter set up as the docker CLI
is (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) on a host that sets REQUESTS_CA_BUNDLE,
CURL_CA_BUNDLE and SSL_CERT_FILE, as many corporate hosts do.

The right CA and client certificate: samples succeed although those variables name the system
bundle (which does not hold the engine's CA). A wrong CA — with those variables naming a bundle
that *does* hold the engine's CA, so that trusting anything but DOCKER_CERT_PATH/ca.pem would
connect —, no client certificate, plain HTTP to the TLS port: engine_up 0, a log line naming
the cause, and /metrics still served. The four exporters run side by side on one engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEST_ROOT
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import ExporterProcess, free_port, sampled_after, value
from tests.harness.seed import busybox_tar
from tests.unit.test_webconfig import PKI, make_pki

P = "docker_storage_"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
ARGS = [
    "--sampler.engine.interval", "1s",
    "--sampler.filesystem.interval", "1s",
    "--sampler.build-cache.interval", "0",
    "--sampler.scan.interval", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("engine-pki"))


@dataclass(frozen=True)
class TLSEngine:
    engine: PrivateEngine
    tcp: str  # tcp://127.0.0.1:PORT, TLS only


@pytest.fixture(scope="module")
def tls_engine(pki: PKI) -> Iterator[TLSEngine]:
    port = free_port()
    eng = PrivateEngine(
        TEST_ROOT / "tls",
        extra_args=(
            "-H", f"tcp://127.0.0.1:{port}",
            "--tlsverify", f"--tlscacert={pki.ca}",
            f"--tlscert={pki.server_cert}", f"--tlskey={pki.server_key}",
        ),
    )  # fmt: skip
    eng.start()
    try:
        eng.docker("import", "-", "dse-tls:1", input=busybox_tar())  # one image to list
        yield TLSEngine(eng, f"tcp://127.0.0.1:{port}")
    finally:
        eng.stop()


def cert_dir(d: Path, ca: Path, client: tuple[Path, Path] | None) -> str:
    d.mkdir()
    shutil.copy(ca, d / "ca.pem")
    if client:
        shutil.copy(client[0], d / "cert.pem")
        shutil.copy(client[1], d / "key.pem")
    return str(d)


def environment(bundle: str, **docker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(dict.fromkeys(CA_VARIABLES, bundle), **docker)
    return env


def failures(log: Path) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "sample failed" and e.get("sampler") == "engine"]


def test_tls_engine_sampled_with_its_own_ca_and_refused_clearly_otherwise(tls_engine, pki, tmp_path):
    client = (pki.client_cert, pki.client_key)
    # A bundle that trusts the engine's CA too: the wrong-CA exporter must not be saved by it.
    trusting = tmp_path / "trusting-bundle.pem"
    trusting.write_bytes(Path(SYSTEM_BUNDLE).read_bytes() + pki.ca.read_bytes())
    good = cert_dir(tmp_path / "good", pki.ca, client)
    wrong = cert_dir(tmp_path / "wrong", pki.other_ca, client)
    nocert = cert_dir(tmp_path / "nocert", pki.ca, None)
    cases = {
        "good": (environment(SYSTEM_BUNDLE, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=good), ""),
        "wrong-ca": (
            environment(str(trusting), DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=wrong),
            f"TLS: the engine's certificate is not trusted by {wrong}/ca.pem (unable to get local issuer",
        ),
        "no-client-cert": (
            environment(SYSTEM_BUNDLE, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=nocert),
            "TLS: the engine wants a client certificate and there is none "
            f"(cert.pem and key.pem in {nocert})",
        ),
        "plain-http": (
            environment(SYSTEM_BUNDLE),
            f"the engine at {tls_engine.tcp} speaks TLS and was asked in plain HTTP: set DOCKER_TLS_VERIFY=1",
        ),
    }
    started = time.time()
    exporters = {
        name: ExporterProcess(tls_engine.tcp, tmp_path / f"{name}.log", ARGS, env=env)
        for name, (env, _) in cases.items()
    }
    try:
        for exp in exporters.values():
            exp.start()
        s = exporters["good"].wait_until(sampled_after(started, "engine"), timeout=30, what="TLS sample")
        assert value(s, P + "engine_up") == 1
        assert value(s, P + "images", state="unused") == 1  # dse-tls:1, listed over TLS
        for name, (_, cause) in cases.items():
            if name == "good":
                continue
            exp = exporters[name]
            s = exp.wait_until(
                lambda s: (value(s, P + "sampler_failures_total", sampler="engine") or 0) >= 2,
                timeout=30,
                what=f"{name}: two failed samples",
            )
            assert value(s, P + "engine_up") == 0, name
            assert value(s, P + "sampler_success", sampler="filesystem") is not None  # still serving
            status, _, body = exp.get("/metrics")
            assert status == 200 and b"docker_storage_engine_up 0.0" in body, name
            logged = failures(exp.log)
            assert len(logged) >= 2, (name, exp.tail())
            for entry in logged:  # every failure: one JSON line, the cause in its error field
                assert entry["error"].startswith(cause), (name, entry)
                assert entry["docker_host"] == tls_engine.tcp
            assert "Traceback" not in exp.log.read_text(), name
        # The good one keeps sampling.
        s = exporters["good"].wait_until(sampled_after(time.time(), "engine"), timeout=30, what="TLS sample")
        assert value(s, P + "engine_up") == 1 and not failures(exporters["good"].log)
    finally:
        for exp in exporters.values():
            exp.stop()


def test_tls_verify_without_a_ca_stops_at_start_with_one_line(tls_engine, tmp_path):
    env = environment(SYSTEM_BUNDLE, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-m", "exporter", "--docker.host", tls_engine.tcp], env=env,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path}/ca.pem does not exist" in lines[0], res.stderr
