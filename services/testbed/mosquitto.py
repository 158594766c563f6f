"""A real mosquitto broker for tests and the bench: a plain and a TLS+password listener on
free loopback ports.

Started with ``mosquitto -c`` from a config written under the caller's directory, stopped by its
PID. The TLS certificate (for 127.0.0.1) is generated with ``cryptography``; the password file
is made with ``mosquitto_passwd``.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME = "voice"
PASSWORD = "correct horse battery staple"
START_TIMEOUT_S = 5.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert, key) files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test broker {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}-cert.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Mosquitto:
    """One broker: ``port`` is anonymous plain MQTT, ``tls_port`` wants TLS and a password."""

    directory: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file, key = make_certificate(self.directory, "broker")
        passwords = self.directory / "passwords"
        subprocess.run(
            ["mosquitto_passwd", "-c", "-b", str(passwords), USERNAME, PASSWORD],
            check=True,
            capture_output=True,
            timeout=10,
        )
        self.log = self.directory / "mosquitto.log"
        self.conf = self.directory / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [
                    "per_listener_settings true",
                    "persistence false",
                    # As root, mosquitto would switch to a user that cannot read these files.
                    f"user {getpass.getuser()}",
                    "log_dest stderr",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"listener {self.tls_port} 127.0.0.1",
                    "allow_anonymous false",
                    f"password_file {passwords}",
                    f"certfile {self.ca_file}",
                    f"keyfile {key}",
                    "",
                ]
            )
        )

    def start(self) -> None:
        """Start the broker and wait (bounded) until both listeners accept connections."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (self.port, self.tls_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
