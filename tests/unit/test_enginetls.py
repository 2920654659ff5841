"""exporter.sources.enginetls: the docker CLI's TLS environment, and what a client built from
it sends with each request (tests/test_engine_tls.py runs it against a real TLS engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, parse
from exporter.sources.engine import EngineClient
from exporter.sources.enginetls import EngineTLS, from_env


def certs(d: Path, *names: str) -> str:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_text("-----BEGIN CERTIFICATE-----\n")
    return str(d)


def test_verify_uses_the_cert_paths_ca_and_client_pair(tmp_path: Path) -> None:
    d = certs(tmp_path, "ca.pem", "cert.pem", "key.pem")
    tls = from_env({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": d})
    assert tls == EngineTLS(d, True, f"{d}/ca.pem", f"{d}/cert.pem", f"{d}/key.pem")
    assert tls.requests_verify == f"{d}/ca.pem"
    # Any non-empty value means verify, as for the docker CLI ("0" too).
    assert from_env({"DOCKER_TLS_VERIFY": "0", "DOCKER_CERT_PATH": d}) == tls


def test_without_a_client_pair_there_is_no_client_certificate(tmp_path: Path) -> None:
    d = certs(tmp_path, "ca.pem", "cert.pem")  # key.pem missing: no client certificate at all
    tls = from_env({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": d})
    assert tls is not None and (tls.cert, tls.key) == ("", "")
    assert tls.docker_config().cert is None


def test_docker_tls_alone_is_tls_without_verifying(tmp_path: Path) -> None:
    d = certs(tmp_path, "cert.pem", "key.pem")
    tls = from_env({"DOCKER_TLS": "1", "DOCKER_CERT_PATH": d})
    assert tls is not None and not tls.verify and tls.ca == "" and tls.requests_verify is False
    assert tls.cert == f"{d}/cert.pem"


@pytest.mark.parametrize(
    "env",
    [{}, {"DOCKER_CERT_PATH": "/x"}, {"DOCKER_TLS_VERIFY": ""}, {"DOCKER_TLS": "", "DOCKER_CERT_PATH": "/x"}],
)
def test_plain_http_unless_asked(env: dict[str, str]) -> None:
    assert from_env(env) is None


def test_default_cert_path_is_home_docker(tmp_path: Path) -> None:
    certs(tmp_path / ".docker", "ca.pem")
    tls = from_env({"DOCKER_TLS_VERIFY": "1", "HOME": str(tmp_path)})
    assert tls is not None and tls.ca == f"{tmp_path}/.docker/ca.pem"


def test_verify_without_a_ca_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    with pytest.raises(ValueError, match=f"{tmp_path}/ca.pem does not exist"):
        from_env(env)
    with pytest.raises(ConfigError, match=r"--docker.host=tcp://127.0.0.1:2376: DOCKER_TLS_VERIFY is set"):
        parse(["--docker.host", "tcp://127.0.0.1:2376"], env)
    # A unix socket has no TLS: the same environment is fine there.
    assert parse(["--docker.host", "unix:///run/x.sock"], env).docker_tls is None


def test_the_client_sends_the_engines_ca_with_every_request(tmp_path: Path) -> None:
    """requests lets REQUESTS_CA_BUNDLE replace a session's CA, not one given per request."""
    d = certs(tmp_path, "ca.pem")
    tls = from_env({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": d})
    client = EngineClient("tcp://127.0.0.1:2376", tls=tls)
    try:
        assert client._request_kw == {"verify": f"{d}/ca.pem"}
        assert client._api.base_url == "https://127.0.0.1:2376"
    finally:
        client.close()
    plain = EngineClient("tcp://127.0.0.1:2375")
    try:
        assert plain._request_kw == {} and plain._api.base_url == "http://127.0.0.1:2375"
    finally:
        plain.close()
