"""A certificate authority and certificates made on the spot, for TLS on loopback.

A SASL_SSL listener needs a certificate the clients can check. For the embedded broker (and the
tests of the HTTP servers) the project makes its own: a CA that lives only in this data directory,
and a server certificate it signs for `localhost` and `127.0.0.1`, so the clients' hostname check
(librdkafka's default `ssl.endpoint.identification.algorithm=https`) passes unchanged. The broker
gets a PKCS#12 keystore (key, certificate, CA) with a generated password; clients get `ca.pem`.

`cryptography` makes them: it always comes with confluent-kafka's Schema Registry extra (through
authlib), so no JDK tool or openssl binary is needed. Keys and passwords are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = ("localhost", "127.0.0.1")
VALIDITY = datetime.timedelta(days=825)
"""How long the local certificates last (the longest TLS clients accept for a server one)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class Authority:
    """A CA key and certificate, able to sign server certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "fraudstream local CA") -> Authority:
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self, hosts: tuple[str, ...] = LOOPBACK_NAMES
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A server key and certificate for `hosts` (names and IP addresses)."""
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, created so from the start (no readable window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def make_tls_files(
    folder: Path, hosts: tuple[str, ...] = LOOPBACK_NAMES
) -> tuple[Path, Path, Path]:
    """A new CA and a server certificate for `hosts` as PEM files: (ca, cert, key)."""
    authority = Authority.create()
    key, cert = authority.issue(hosts)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(_pem(authority.cert))
    paths[1].write_bytes(_pem(cert))
    write_private(
        paths[2],
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return paths


@dataclass(frozen=True)
class BrokerTls:
    """The broker's TLS files in one folder: `ca.pem` for clients, `broker.p12` and its password
    for the broker. Made once; a restart reuses them, so clients keep trusting the same CA."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def password_file(self) -> Path:
        return self.folder / "keystore.password"

    def exists(self) -> bool:
        return self.ca.is_file() and self.keystore.is_file() and self.password_file.is_file()

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def __repr__(self) -> str:
        return f"BrokerTls({str(self.folder)!r})"

    def ensure(self) -> BrokerTls:
        """Make the CA, the broker's certificate and its PKCS#12 keystore unless they exist."""
        if self.exists():
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        authority = Authority.create("fraudstream broker CA")
        key, cert = authority.issue()
        password = secrets.token_hex(24)
        keystore = pkcs12.serialize_key_and_certificates(
            b"broker",
            key,
            cert,
            [authority.cert],
            serialization.BestAvailableEncryption(password.encode()),
        )
        write_private(self.password_file, password.encode())
        write_private(self.keystore, keystore)
        self.ca.write_bytes(_pem(authority.cert))  # public: every client needs it
        return self

    def server_properties(self) -> str:
        """server.properties lines for the broker's TLS listeners: the PKCS#12 keystore, and the
        CA as a PEM truststore for the broker's own connections to itself."""
        password = self.password()
        return f"""ssl.keystore.type=PKCS12
ssl.keystore.location={self.keystore}
ssl.keystore.password={password}
ssl.key.password={password}
ssl.truststore.type=PEM
ssl.truststore.location={self.ca}
ssl.client.auth=none
"""
