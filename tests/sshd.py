"""A real OpenSSH server on 127.0.0.1 with throwaway host and user keys, for the tests.

openssh-server is installed through apt when missing (scripts/ensure-sshd.sh), the way
scripts/ensure-postgres.sh installs PostgreSQL; no system service is started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    if found:
        return found
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-sshd.sh")], check=True, timeout=900)
    return shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    root: Path
    port: int
    key: Path
    proc: subprocess.Popen

    def prefix(self) -> list[str]:
        """What a tenant's exec = [...] looks like for this server."""
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.key), "-p", str(self.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"{os.environ.get('USER') or 'root'}@127.0.0.1",
        ]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(root: Path) -> Sshd:
    sshd = _sshd_binary()
    root.mkdir(parents=True, exist_ok=True)
    host_key, user_key = root / "host_ed25519", root / "id_ed25519"
    for k in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    (root / "authorized_keys").write_text((root / "id_ed25519.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPrintMotd no\nAcceptEnv none\n"
    )
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(root / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "sshd.log", "wb"))
    server = Sshd(root=root, port=port, key=user_key, proc=proc)
    deadline = time.monotonic() + 30
    while True:  # ready when a real login runs a command
        r = subprocess.run([*server.prefix(), "true"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode == 0:
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()[-2000:]} {r.stderr.decode()[-500:]}")
        time.sleep(0.1)
