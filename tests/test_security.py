"""The front door of the real exporter process: TLS, client certificates, basic auth, extra
headers, bad web config files, slow clients and --web.max-requests.

No Docker engine is needed: the exporter points at a socket that does not exist, serves
anyway (`docker_storage_engine_up 0`), and every client here is a real TLS / HTTP client on
127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.healthcheck import probe
from tests.harness.exporter import ExporterProcess, free_port
from tests.unit.test_webconfig import PKI, bcrypt_hash, make_pki

QUIET = ["--sampler.scan.interval", "0", "--sampler.build-cache.interval", "0", "--log.level", "warn"]
TLS_FAILURES = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, socket.timeout)


class Exporter(ExporterProcess):
    """ExporterProcess that waits for the port (its own readiness check scrapes plain HTTP)."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        super().__init__(f"unix://{tmp}/absent/docker.sock", tmp / "exporter.log", [*QUIET, *args])

    def start(self) -> Exporter:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited {self.proc.returncode}: {self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"exporter not listening in 20s: {self.tail()}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def run(tmp_path: Path) -> Iterator:
    started: list[Exporter] = []

    def start(web_config: str | None = None, *args: str) -> Exporter:
        extra = list(args)
        if web_config is not None:
            path = tmp_path / "web.yml"
            path.write_text(web_config)
            extra += ["--web.config.file", str(path)]
        exp = Exporter(tmp_path, extra)
        started.append(exp)
        return exp.start()

    yield start
    for exp in started:
        exp.stop()


def client_context(
    pki: PKI, cert: Path | None = None, key: Path | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))  # verifies the server, SAN 127.0.0.1
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def https_get(
    port: int, ctx: ssl.SSLContext, path: str = "/metrics", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.headers), r.read()
    finally:
        conn.close()


def http_get(
    port: int, path: str = "/metrics", headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.headers), r.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def tls_section(pki: PKI, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n{extra}"


MTLS = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca}\n"


# --- TLS and client certificates ----------------------------------------------------------


def test_mutual_tls(pki: PKI, run) -> None:
    exp = run(tls_section(pki, MTLS.format(ca=pki.ca)))
    # No client certificate: the handshake is refused.
    with pytest.raises(TLS_FAILURES):
        https_get(exp.port, client_context(pki))
    # A client certificate from another CA: refused.
    with pytest.raises(TLS_FAILURES):
        https_get(exp.port, client_context(pki, pki.other_client_cert, pki.other_client_key))
    # Plain HTTP to the TLS port: no HTTP answer.
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
        http_get(exp.port)
    # A good client certificate: metrics.
    status, _, body = https_get(exp.port, client_context(pki, pki.client_cert, pki.client_key))
    assert status == 200
    assert b"docker_storage_engine_up 0" in body
    # The image's healthcheck still calls it alive (it has no client certificate).
    alive, detail = probe("127.0.0.1", exp.port)
    assert alive and detail.endswith("alive, wants a client certificate"), detail


def test_client_allowed_sans(pki: PKI, run) -> None:
    exp = run(tls_section(pki, MTLS.format(ca=pki.ca) + "  client_allowed_sans: [someone-else]\n"))
    with pytest.raises(TLS_FAILURES):
        https_get(exp.port, client_context(pki, pki.client_cert, pki.client_key))


def test_min_version_tls13_refuses_a_tls12_client(pki: PKI, run) -> None:
    exp = run(tls_section(pki, "  min_version: TLS13\n"))
    with pytest.raises(ssl.SSLError):
        https_get(exp.port, client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    assert https_get(exp.port, client_context(pki))[0] == 200


def test_a_client_that_never_handshakes_blocks_nobody(pki: PKI, run) -> None:
    exp = run(tls_section(pki), "--web.read-header-timeout", "2s")
    silent = [socket.create_connection(("127.0.0.1", exp.port), timeout=10) for _ in range(20)]
    try:
        t0 = time.monotonic()
        assert https_get(exp.port, client_context(pki))[0] == 200
        assert time.monotonic() - t0 < 2  # not queued behind the silent handshakes
        # ... and the server drops them once the handshake deadline passes.
        for s in silent:
            s.settimeout(8)
            assert s.recv(1) == b""
        assert time.monotonic() - t0 < 10
    finally:
        for s in silent:
            s.close()


# --- basic auth and headers ---------------------------------------------------------------


def test_basic_auth_over_tls_with_headers(pki: PKI, run) -> None:
    web = tls_section(pki) + (
        "http_server_config:\n  headers:\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  prometheus: '{bcrypt_hash('s3cret pass')}'\n"
    )
    exp = run(web)
    ctx = client_context(pki)
    for path in ("/metrics", "/", "/healthz", "/nope"):  # every path is protected
        status, headers, _ = https_get(exp.port, ctx, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith('Basic realm="docker-storage-exporter"')
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert https_get(exp.port, ctx, headers=basic("prometheus", "wrong"))[0] == 401
    assert https_get(exp.port, ctx, headers=basic("root", "s3cret pass"))[0] == 401
    assert https_get(exp.port, ctx, headers={"Authorization": "Basic !!"})[0] == 401
    status, headers, body = https_get(exp.port, ctx, headers=basic("prometheus", "s3cret pass"))
    assert status == 200
    assert b"docker_storage_engine_up 0" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "deny"
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert https_get(exp.port, ctx, "/healthz", basic("prometheus", "s3cret pass"))[:3:2] == (200, b"ok\n")
    # The healthcheck treats 401 as alive.
    assert probe("127.0.0.1", exp.port)[0]


def test_basic_auth_without_tls_and_methods(run) -> None:
    exp = run(f"basic_auth_users:\n  prometheus: '{bcrypt_hash('pw')}'\n")
    assert http_get(exp.port)[0] == 401
    assert http_get(exp.port, headers=basic("prometheus", "pw"))[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=10)
    for method, want in (("POST", 405), ("DELETE", 405), ("HEAD", 401)):
        conn.request(method, "/metrics")
        r = conn.getresponse()
        r.read()
        assert r.status == want, method
    conn.close()
    assert probe("127.0.0.1", exp.port) == (True, f"http://127.0.0.1:{exp.port}/healthz: HTTP 401")


# --- bad web config files -----------------------------------------------------------------


BAD_FILES = {
    "missing": (None, "cannot read the file"),
    "yaml": ("tls_server_config: [\n", "not valid YAML"),
    "unknown key": ("tls_server_config:\n  certfile: a\n", "unknown key 'tls_server_config.certfile'"),
    "unreadable cert": (
        "tls_server_config:\n  cert_file: /nonexistent/x.crt\n  key_file: {key}\n",
        "cert_file",
    ),
    "cert/key mismatch": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {other_key}\n",
        "does not match",
    ),
    "client_auth_type": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Yes\n",
        "client_auth_type",
    ),
    "not bcrypt": ("basic_auth_users:\n  prometheus: hunter2\n", "not a bcrypt hash"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_web_config_exits_2_with_one_line(pki: PKI, tmp_path: Path, case: str) -> None:
    text, reason = BAD_FILES[case]
    path = tmp_path / "web-config.yml"
    if text is not None:
        text = text.replace("{cert}", str(pki.server_cert)).replace("{key}", str(pki.server_key))
        path.write_text(text.replace("{other_key}", str(pki.client_key)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--web.config.file",
            str(path),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and reason in lines[0], lines[0]
    assert lines[0].startswith("docker-storage-exporter: error: --web.config.file ")


# --- slow clients and --web.max-requests --------------------------------------------------


def test_slowloris_is_cut_off_and_scrapes_go_on(run) -> None:
    exp = run(None, "--web.read-header-timeout", "2s")
    n = 30
    closed_after: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        # A request line, then a header one byte per 0.3 s, never finished.
        s = socket.create_connection(("127.0.0.1", exp.port), timeout=10)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            s.settimeout(0.3)
            while not stop.is_set():
                try:
                    if s.recv(1) == b"":
                        break  # the server closed it
                except TimeoutError:
                    pass
                try:
                    s.send(b"X")
                except OSError:
                    break
            with lock:
                closed_after.append(time.monotonic() - start)
        finally:
            s.close()

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(5):  # a normal scrape, several times, while the slow clients trickle
            t0 = time.monotonic()
            status, _, body = http_get(exp.port, timeout=5)
            assert status == 200 and b"docker_storage_engine_up" in body
            assert time.monotonic() - t0 < 1.5  # not stuck behind the 2 s header deadline
        for t in threads:
            t.join(timeout=10)
    finally:
        stop.set()
    # Every slow client was dropped at about the header deadline, though it kept sending.
    assert len(closed_after) == n
    assert max(closed_after) < 2 + 3, closed_after
    assert min(closed_after) > 1.5, closed_after


def test_max_requests_answers_503_beyond_the_limit(run) -> None:
    # A request held in handling: a wrong password at bcrypt cost 14 keeps its slot ~1.4 s.
    slow_hash = bcrypt_hash("pw", rounds=14)
    exp = run(f"basic_auth_users:\n  prometheus: '{slow_hash}'\n", "--web.max-requests", "1")
    attempts = []
    for _attempt in range(5):  # bounded: on a loaded machine a probe may win the slot first
        held: dict[str, int] = {}

        def hold(out: dict[str, int] = held) -> None:
            out["status"] = http_get(exp.port, headers=basic("prometheus", "wrong"), timeout=30)[0]

        t = threading.Thread(target=hold)
        t.start()
        time.sleep(0.3)
        seen = []
        while t.is_alive():
            status, headers, _ = http_get(exp.port, "/healthz", timeout=5)
            seen.append(status)
            if status == 503:
                assert headers["Retry-After"] == "1"
                break
            time.sleep(0.02)
        t.join(30)
        attempts.append((seen, held.get("status")))
        if 503 in seen and held.get("status") == 401:
            break
    # A second request got 503 at once while the first was in handling; the first was served.
    assert 503 in seen and held.get("status") == 401, attempts
    # The slot is free again.
    assert http_get(exp.port, headers=basic("prometheus", "pw"))[0] == 200


def test_max_requests_under_a_burst(run) -> None:
    exp = run(None, "--web.max-requests", "1")
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def scrape() -> None:
        barrier.wait(10)
        for _ in range(5):
            s = http_get(exp.port, timeout=10)[0]
            with lock:
                statuses.append(s)

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(statuses) == 100
    assert set(statuses) <= {200, 503}, set(statuses)
    assert 200 in statuses
    # And nothing leaked: a lone scrape gets through. A slot is freed just after its response is
    # written, so the very next request may still find it taken on a loaded machine: a few tries.
    lone = []
    for _ in range(50):
        lone.append(http_get(exp.port)[0])
        if lone[-1] == 200:
            break
        time.sleep(0.1)
    assert lone[-1] == 200, lone
