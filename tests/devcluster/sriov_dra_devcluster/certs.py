"""The dev cluster's PKI: one CA, the apiserver's serving cert, client certs, the SA key.

Every file lands in one directory, written once per cluster. ECDSA P-256 keys:
Kubernetes accepts them everywhere (TLS, client auth, ES256 ServiceAccount
tokens) and they are generated in microseconds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_CIDR: Final = "10.96.0.0/24"
KUBERNETES_SERVICE_IP: Final = "10.96.0.1"
_VALIDITY: Final = dt.timedelta(days=365)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's user (CN) and groups (O), and the file stem it is stored under."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN: Final = ClientIdentity("admin", "sriov-dra-admin", ("system:masters",))
CONTROLLER_MANAGER: Final = ClientIdentity(
    "kube-controller-manager", "system:kube-controller-manager"
)
SCHEDULER: Final = ClientIdentity("kube-scheduler", "system:kube-scheduler")
# kwok plays every simulated kubelet at once; a system:node:<name> identity would
# bind it to one node, so it gets admin rights under a name of its own.
KWOK: Final = ClientIdentity("kwok", "sriov-dra-kwok", ("system:masters",))
CLIENTS: Final = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK)
# Real nodes: the apiserver's identity towards kubelets (exec, logs), kube-proxy's.
APISERVER_KUBELET_CLIENT: Final = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)
KUBE_PROXY: Final = ClientIdentity("kube-proxy", "system:kube-proxy")
NODE_HOST_IP: Final = "10.250.0.1"
"""The node bridge's host address (``node_plan.HOST_IP``): nodes and pods reach the API there."""


def kubelet_identity(node: str) -> ClientIdentity:
    """A kubelet's identity, as the Node authorizer expects it."""
    return ClientIdentity(f"kubelet-{node}", f"system:node:{node}", ("system:nodes",))


@dataclass(frozen=True)
class Pki:
    """Paths of the files ``create_pki`` writes."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, who: ClientIdentity) -> Path:
        return self.directory / f"{who.stem}.crt"

    def client_key(self, who: ClientIdentity) -> Path:
        return self.directory / f"{who.stem}.key"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    # Backdated a minute so freshly started components never see "not yet valid".
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )


def _leaf(
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
) -> tuple[x509.CertificateBuilder, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (
        _builder(subject, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    return builder, key


def _issue_client(
    pki: Pki, who: ClientIdentity, ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name
) -> None:
    builder, key = _leaf(
        _name(who.user, who.groups), ExtendedKeyUsageOID.CLIENT_AUTH, ca_key, ca_name
    )
    _write_key(pki.client_key(who), key)
    _write_cert(pki.client_cert(who), builder.sign(ca_key, hashes.SHA256()))


def issue_client_cert(pki: Pki, who: ClientIdentity) -> None:
    """Sign a client certificate for ``who`` with the cluster's CA (e.g. a new node's kubelet)."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not an EC key")
    ca_name = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).subject
    _issue_client(pki, who, ca_key, ca_name)


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA, serving cert, client certs and SA signing key into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca_key = _key()
    ca_name = _name("sriov-dra-devcluster-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, ca_cert)

    builder, key = _leaf(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, ca_key, ca_name)
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
        x509.IPAddress(ipaddress.ip_address(NODE_HOST_IP)),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    cert = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    _write_key(pki.serving_key, key)
    _write_cert(pki.serving_cert, cert)

    for who in (*CLIENTS, APISERVER_KUBELET_CLIENT, KUBE_PROXY):
        _issue_client(pki, who, ca_key, ca_name)

    sa_key = _key()
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
