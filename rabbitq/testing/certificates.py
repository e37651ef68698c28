"""Throwaway TLS certificates for a local broker (``LocalBroker(tls=True)``), made by
trustme: a private CA, a server certificate for ``localhost`` and ``127.0.0.1``, and a client
certificate, written as PEM files a broker and a client can be pointed at."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rabbitq.errors import ConfigurationError

SERVER_NAMES = ("localhost", "127.0.0.1")
CLIENT_NAME = "rabbitq-test-client"


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed both; what a client trusts (broker_use_ssl's ca_certs)
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A fresh CA and its server and client certificates, in ``directory``."""
    try:
        import trustme
    except ImportError:
        raise ConfigurationError(
            "a TLS test broker needs trustme to make its certificates: pip install trustme "
            "(it is in rabbitq's dev extra)"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="rabbitq test CA")
    server = authority.issue_cert(*SERVER_NAMES)
    client = authority.issue_cert(CLIENT_NAME)
    found = Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    authority.cert_pem.write_to_path(str(found.ca))
    # The chain, leaf first: the broker sends it whole.
    found.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(found.server_key))
    found.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(found.client_key))
    return found
