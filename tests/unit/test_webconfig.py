"""exporter.webconfig: the exporter-toolkit web config file, basic auth, and --metrics.hide-names.

`make_pki` (a CA, a server certificate for 127.0.0.1, a client certificate, and a second CA
with its own client) is shared with tests/test_security.py, which runs the real exporter.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter.collector import StorageCollector, hidden
from exporter.config import ConfigError, parse
from exporter.model import Container, ContainerScan, SamplerStatus, ScanSnapshot, Volume, VolumeScan
from exporter.samplers import Store
from exporter.sources.du import Usage
from exporter.webaccess import BasicAuth
from exporter.webconfig import WebConfigError, load

# --- a throwaway PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> None:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    ca_cert, ca_key = ca
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(d: Path) -> PKI:
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca("dse test CA")
    other = _ca("dse other CA")
    server = _leaf(
        "127.0.0.1",
        ca,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _leaf("prometheus", ca, [x509.DNSName("prometheus")], ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf("prometheus", other, [x509.DNSName("prometheus")], ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = PKI(
        dir=d,
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        other_ca=d / "other-ca.crt",
        other_client_cert=d / "other-client.crt",
        other_client_key=d / "other-client.key",
    )
    _write_cert(pki.ca, ca[0])
    _write_cert(pki.other_ca, other[0])
    for (cert, key), cpath, kpath in (
        (server, pki.server_cert, pki.server_key),
        (client, pki.client_cert, pki.client_key),
        (stranger, pki.other_client_cert, pki.other_client_key),
    ):
        _write_cert(cpath, cert)
        _write_key(kpath, key)
    return pki


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(d: Path, text: str, name: str = "web.yml") -> Path:
    p = d / name
    p.write_text(text)
    return p


# --- loading ------------------------------------------------------------------------------


def test_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, "")))
    assert cfg.tls is None and cfg.headers == () and cfg.users == () and not cfg.auth


def test_full_file(tmp_path: Path, pki: PKI) -> None:
    h = bcrypt_hash("s3cret")
    cfg = load(
        str(
            write(
                tmp_path,
                f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca}
  client_allowed_sans: [prometheus]
  min_version: TLS13
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    x-content-type-options: nosniff
    X-Frame-Options: ""
basic_auth_users:
  prometheus: "{h}"
""",
            )
        )
    )
    assert cfg.tls is not None
    assert cfg.tls.client_auth_type == "RequireAndVerifyClientCert" and cfg.tls.requires_client_cert
    assert cfg.tls.min_version == "TLS13" and cfg.tls.max_version == ""
    assert cfg.tls.client_allowed_sans == ("prometheus",)
    # Canonical names; a blank value means unset, as in exporter-toolkit.
    assert cfg.headers == (
        ("Strict-Transport-Security", "max-age=31536000"),
        ("X-Content-Type-Options", "nosniff"),
    )
    assert cfg.users == (("prometheus", h),) and cfg.auth
    hash(cfg)  # frozen all the way down


def test_relative_paths_resolve_against_the_config_files_dir(
    tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_path = write(
        pki.dir,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: ./server.key\n",
        name="relative.yml",
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths must not depend on the working dir
    cfg = load(os.path.relpath(cfg_path, tmp_path))
    assert cfg.tls is not None
    assert cfg.tls.cert_file == str(pki.server_cert) and cfg.tls.key_file == str(pki.server_key)
    assert cfg.path == str(cfg_path)


def test_tls_section_without_files_is_plain_http(tmp_path: Path) -> None:
    assert load(str(write(tmp_path, "tls_server_config:\n  min_version: TLS12\n"))).tls is None


def test_htpasswd_style_2y_hash_works(tmp_path: Path) -> None:
    h = bcrypt_hash("pw").replace("$2b$", "$2y$", 1)  # what `htpasswd -B` writes
    cfg = load(str(write(tmp_path, f"basic_auth_users:\n  u: '{h}'\n")))
    assert BasicAuth(cfg.users).check("Basic " + base64.b64encode(b"u:pw").decode())


BAD = [
    ("tls_server_config: [", "not valid YAML at line"),
    ("- a\n- b\n", "the file must be a mapping"),
    ("tls_server_cfg: {}\n", "unknown key 'tls_server_cfg'"),
    ("tls_server_config:\n  cert_fil: x\n", "unknown key 'tls_server_config.cert_fil'"),
    ("rate_limit: {interval: 1s}\n", "rate_limit is not supported"),
    ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites is not supported"),
    ("tls_server_config:\n  cert_file: {cert}\n", "key_file is missing"),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: {key}\n", "cert_file"),
    ("tls_server_config:\n  cert_file: {cert}\n  key_file: {client_key}\n", "does not match"),
    ("tls_server_config:\n  cert_file: {key}\n  key_file: {key}\n", "not a PEM certificate"),
    ("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n", "not a usable PEM private key"),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Always\n",
        "client_auth_type 'Always' is invalid",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        "needs client_ca_file",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
        "client_auth_type is NoClientCert",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {key}\n",
        "client_ca_file",
    ),
    ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS14\n", "min_version"),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS13\n"
        "  max_version: TLS12\n",
        "max_version is older",
    ),
    ("http_server_config:\n  headers:\n    Server: nginx\n", "can not be configured"),
    ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", "use nosniff"),
    ('http_server_config:\n  headers:\n    X-XSS-Protection: "1\\r\\nSet-Cookie: a=b"\n', "one line"),
    ("basic_auth_users:\n  prometheus: plaintext\n", "not a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: $2b$99$" + "a" * 53 + "\n", "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': $2b$04$" + "a" * 53 + "\n", "hold no ':'"),
    ("basic_auth_users: [a]\n", "basic_auth_users must be a mapping"),
]


@pytest.mark.parametrize(("text", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_files_say_why_in_one_line(tmp_path: Path, pki: PKI, text: str, reason: str) -> None:
    for k, v in {
        "cert": pki.server_cert,
        "key": pki.server_key,
        "client_key": pki.client_key,
        "ca": pki.ca,
    }.items():
        text = text.replace("{" + k + "}", str(v))
    with pytest.raises(WebConfigError) as err:
        load(str(write(tmp_path, text)))
    msg = str(err.value)
    assert reason in msg, msg
    assert "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read the file: no such file"):
        load(str(tmp_path / "absent.yml"))


def test_encrypted_key_fails_without_prompting(tmp_path: Path, pki: PKI) -> None:
    key = tmp_path / "enc.key"
    _write_key(key, _key(), password=b"hunter2")
    with pytest.raises(WebConfigError, match="key_file"):
        load(str(write(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {key}\n")))


def test_config_flag_names_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "nope: 1\n")
    with pytest.raises(ConfigError) as err:
        parse(["--web.config.file", str(bad)], {})
    assert str(err.value).startswith(f"--web.config.file {bad}: unknown key 'nope'")
    with pytest.raises(ConfigError, match="DOCKER_STORAGE_EXPORTER_WEB_CONFIG_FILE"):
        parse([], {"DOCKER_STORAGE_EXPORTER_WEB_CONFIG_FILE": str(bad)})


def test_security_flags(tmp_path: Path) -> None:
    cfg = parse([], {})
    assert (cfg.web_config, cfg.max_requests, cfg.read_header_timeout, cfg.hide_names) == (
        None,
        64,
        10.0,
        False,
    )
    cfg = parse(
        [
            "--web.config.file",
            str(write(tmp_path, "")),
            "--web.max-requests=0",
            "--web.read-header-timeout=2s",
        ],
        {},
    )
    assert cfg.web_config is not None and cfg.max_requests == 0 and cfg.read_header_timeout == 2.0
    assert parse(["--metrics.hide-names"], {}).hide_names
    assert parse(["--metrics.hide-names=false"], {}).hide_names is False
    assert parse([], {"DOCKER_STORAGE_EXPORTER_METRICS_HIDE_NAMES": "true"}).hide_names
    with pytest.raises(ConfigError, match=r"--web.max-requests=.-1. is invalid"):
        parse(["--web.max-requests=-1"], {})
    with pytest.raises(ConfigError, match=r"--metrics.hide-names=.maybe. is invalid"):
        parse(["--metrics.hide-names=maybe"], {})
    with pytest.raises(ConfigError, match=r"web\.read-header-timeout"):
        parse(["--web.read-header-timeout=0"], {})


# --- basic auth ---------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks() -> None:
    auth = BasicAuth((("prometheus", bcrypt_hash("pa:ss wörd")), ("other", bcrypt_hash("x"))))
    assert auth.check(basic("prometheus", "pa:ss wörd"))  # a ':' in a password is fine
    assert auth.check("basic " + basic("prometheus", "pa:ss wörd").split(" ")[1])  # scheme case
    assert not auth.check(basic("prometheus", "wrong"))
    assert not auth.check(basic("other", "pa:ss wörd"))  # another user's password
    assert not auth.check(basic("nobody", "x"))
    assert not auth.check(basic("prometheus", ""))
    assert not auth.check(None)
    assert not auth.check("")
    assert not auth.check("Bearer abc")
    assert not auth.check("Basic !!!notbase64")
    assert not auth.check("Basic " + base64.b64encode(b"no-colon").decode())
    assert not auth.check(basic("prometheus", "x" * 100))  # over bcrypt's 72 bytes: no crash


def test_successes_are_cached_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth((("prometheus", bcrypt_hash("s3cret")),))
    calls = []
    real = bcrypt.checkpw

    def counting(pw: bytes, h: bytes) -> bool:
        calls.append(pw)
        return real(pw, h)

    monkeypatch.setattr(auth._bcrypt, "checkpw", counting)
    for _ in range(5):
        assert auth.check(basic("prometheus", "s3cret"))
    assert len(calls) == 1  # bcrypt once, then the cache
    for _ in range(3):
        assert not auth.check(basic("prometheus", "wrong"))
    assert len(calls) == 4  # failures are never cached
    assert all(b"s3cret" not in k for k in auth._cache)
    assert all(len(k) == 32 for k in auth._cache)  # HMAC-SHA256 digests only


def test_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth((("u", bcrypt_hash("p")),), ttl=0.0)
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(auth._bcrypt, "checkpw", lambda pw, h: calls.append(1) or real(pw, h))
    assert auth.check(basic("u", "p")) and auth.check(basic("u", "p"))
    assert len(calls) == 2


def test_unknown_user_costs_a_bcrypt_too(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = BasicAuth((("u", bcrypt_hash("p")),))
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(auth._bcrypt, "checkpw", lambda pw, h: calls.append(1) or real(pw, h))
    # Even the right password of the decoy hash does not let an unknown user in.
    assert not auth.check(basic("nobody", "p"))
    assert calls == [1]


# --- --metrics.hide-names -----------------------------------------------------------------


def _usage(n: int) -> Usage:
    return Usage(disk_bytes=n, apparent_bytes=n, files=1, errors=0)


def _hide_store() -> Store:
    # Built on tests/unit/test_collector.py's synthetic engine snapshot.
    from tests.unit.test_collector import engine_snapshot, image, sha

    images = (
        image(
            "a", 500, ("registry.acme.corp/payroll/api:2.1",), state="in_use", registry="registry.acme.corp"
        ),
        image("b", 400, ("debian:bookworm", "debian:12")),
        image("c", 300, ()),
    )
    containers = (
        Container(
            "1" * 64, "payroll-api", sha("a"), "registry.acme.corp/payroll/api:2.1", "running", ("pgdata",)
        ),
    )
    volumes = (Volume("payroll-db", "local", "/var/lib/docker/volumes/payroll-db/_data", 1),)
    store = Store()
    store.publish(
        SamplerStatus("engine", success=True, last_success=1.0, runs=1),
        engine_snapshot(images, containers=containers, volumes=volumes),
    )
    store.publish(
        SamplerStatus("scan", success=True, last_success=1.0, runs=1),
        ScanSnapshot(
            root_dir="/var/lib/docker",
            driver="overlay2",
            attribution=True,
            attribution_reason="",
            root_dirs={"volumes": _usage(10)},
            owners={},
            layers=(),
            containers=(
                ContainerScan(
                    "1" * 64,
                    "payroll-api",
                    "registry.acme.corp/payroll/api:2.1",
                    "running",
                    _usage(100),
                    _usage(50),
                ),
                ContainerScan("2" * 64, "/weird name", "sha256:" + "d" * 64, "exited", _usage(1), _usage(1)),
            ),
            volumes=(
                VolumeScan("payroll-db", "local", 1, _usage(7), _usage(8)),
                VolumeScan("f" * 64, "local", 0, _usage(3), _usage(4)),
            ),
            orphans=(),
            walks={},
            cached_layers=0,
            skipped=0,
            errors=0,
        ),
    )
    return store


NAMES = ("payroll", "acme", "debian", "bookworm", "pgdata", "weird")


def test_hide_names_leaves_no_name_in_any_label() -> None:
    from tests.unit.test_collector import exposition, families, promtool_check

    shown = exposition(StorageCollector(_hide_store(), hide_names=False))
    assert all(n in shown for n in ("payroll", "acme", "debian")), shown  # the test's premise
    collector = StorageCollector(_hide_store(), hide_names=True)
    text = exposition(collector)
    for n in NAMES:
        assert n not in text, n
    assert promtool_check(text).returncode == 0
    fams = families(collector)
    imgs = {s.labels["image_id"]: s.labels for s in fams["docker_storage_image_size_bytes"].samples}
    # Ids stay; names become stable 12-hex stand-ins; untagged stays <none>.
    assert imgs["a" * 12] == {
        "image_id": "a" * 12,
        "repository": hidden("registry.acme.corp/payroll/api"),
        "tag": hidden("2.1"),
    }
    assert imgs["c" * 12]["repository"] == "<none>"
    tags = {
        (s.labels["repository"], s.labels["tag"])
        for s in fams["docker_storage_image_tag_info"].samples
        if s.labels["image_id"] == "b" * 12
    }
    assert len(tags) == 2  # two tags stay two series
    regs = {s.labels["registry"] for s in fams["docker_storage_registry_images"].samples}
    assert regs == {hidden("registry.acme.corp"), "docker.io", "none"}
    rw = {s.labels["container"]: s.labels["image"] for s in fams["docker_storage_container_rw_bytes"].samples}
    # The container's short id; its image's short id (joinable with image_id) when known.
    assert rw == {"1" * 12: "a" * 12, "2" * 12: "d" * 12}
    vols = {s.labels["volume"] for s in fams["docker_storage_volume_disk_bytes"].samples}
    assert vols == {hidden("payroll-db"), "f" * 12}  # an anonymous volume's name is an id


def test_hidden_is_stable_and_keeps_ids() -> None:
    assert hidden("payroll-db") == hidden("payroll-db") and len(hidden("payroll-db")) == 12
    assert hidden("payroll-db") != hidden("payroll-dc")
    assert hidden("sha256:" + "ab" * 32) == "ab" * 6


def test_renewed_certificate_is_picked_up_and_a_broken_one_is_not(tmp_path: Path) -> None:
    from exporter.webaccess import TLSContextHolder

    old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
    cfg = load(str(write(old.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")))
    assert cfg.tls is not None
    holder = TLSContextHolder(cfg.tls, interval=0.0)
    first, err = holder.get()
    assert err == "" and holder.get()[0] is first  # unchanged files: the same context
    for name in ("server.crt", "server.key"):
        (old.dir / name).write_bytes((new.dir / name).read_bytes())
    renewed, err = holder.get()
    assert err == "" and renewed is not first
    (old.dir / "server.key").write_bytes((new.dir / "client.key").read_bytes())  # a bad renewal
    kept, err = holder.get()
    assert kept is renewed and "does not match" in err
