"""TLS material for the local broker (`dev up --tls`), made with the JDK's ``keytool``.

A development CA signs one broker certificate whose subject alternative names are
``localhost`` and ``127.0.0.1``, so clients verify the broker's host name as they would in
production (librdkafka checks it by default). The broker reads a PKCS12 keystore; clients get
the CA as PEM (``ca.pem``, for ``STREAMJOBS_SSL_CA_LOCATION``). keytool ships with the Java
the broker needs anyway, so no other tool (openssl, a Python crypto package) is required.
Files are made once per broker directory and reused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import DevBrokerError

__all__ = ["DEV_TLS_PASSWORD", "DevCerts", "make_certs"]

# Protects the dev keystores on disk only; they hold a throw-away key for 127.0.0.1.
DEV_TLS_PASSWORD = "streamjobs-dev-tls"
_VALIDITY_DAYS = "3650"


@dataclass(frozen=True)
class DevCerts:
    ca_pem: Path  # the CA clients trust
    keystore: Path  # the broker's key and certificate chain (PKCS12)
    password: str = DEV_TLS_PASSWORD


def make_certs(directory: Path, java: str) -> DevCerts:
    """The CA and broker keystore in ``directory``, created on first use."""
    certs = DevCerts(directory / "ca.pem", directory / "broker.p12")
    if certs.ca_pem.exists() and certs.keystore.exists():
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():  # a half-made set from an interrupted run
        stale.unlink()
    tool = _keytool(java)
    ca, csr, signed = directory / "ca.p12", directory / "broker.csr", directory / "broker.pem"
    pw = ("-storepass", certs.password)
    steps: list[list[str]] = [
        ["-genkeypair", "-alias", "ca", "-dname", "CN=streamjobs dev CA", "-keyalg", "RSA",
         "-keysize", "2048", "-validity", _VALIDITY_DAYS, "-ext", "bc:c",
         "-keystore", str(ca), "-storetype", "PKCS12", *pw],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), *pw,
         "-file", str(certs.ca_pem)],
        ["-genkeypair", "-alias", "broker", "-dname", "CN=localhost", "-keyalg", "RSA",
         "-keysize", "2048", "-validity", _VALIDITY_DAYS,
         "-keystore", str(certs.keystore), "-storetype", "PKCS12", *pw],
        ["-certreq", "-alias", "broker", "-keystore", str(certs.keystore), *pw,
         "-file", str(csr)],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", str(ca), *pw, "-infile", str(csr),
         "-outfile", str(signed), "-validity", _VALIDITY_DAYS,
         "-ext", "SAN=dns:localhost,ip:127.0.0.1"],
        # The chain reply needs its issuer in the keystore first.
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(certs.ca_pem),
         "-keystore", str(certs.keystore), *pw],
        ["-importcert", "-alias", "broker", "-file", str(signed),
         "-keystore", str(certs.keystore), *pw],
    ]
    for args in steps:
        proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            for f in (certs.ca_pem, certs.keystore):
                f.unlink(missing_ok=True)
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise DevBrokerError(f"keytool {args[0]} failed making the dev TLS files: "
                                 f"{last[0]}")
    for f in (ca, csr, signed):
        f.unlink()
    return certs


def _keytool(java: str) -> str:
    # Beside the java that runs the broker (through the /usr/bin/java alternatives link).
    beside = Path(os.path.realpath(java)).parent / "keytool"
    if beside.exists():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise DevBrokerError(f"keytool (part of the JDK) was not found beside {java} or on PATH")
    return found
