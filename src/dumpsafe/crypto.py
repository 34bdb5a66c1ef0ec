"""age encryption with tenant-held keys: the service needs only public recipients.

Identities (private keys) are read only for restore/verify, from --identity FILE,
the tenant's identity_file, or $DUMPSAFE_AGE_IDENTITY (a path); never logged or stored.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyrage
from pyrage import ssh, x25519

from dumpsafe.errors import ConfigError, UsageError

IDENTITY_ENV = "DUMPSAFE_AGE_IDENTITY"


def parse_recipient(text: str) -> Any:
    text = text.strip()
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return ssh.Recipient.from_str(text)
    except pyrage.RecipientError:
        pass
    raise ValueError(f"{text[:16]!r}... is not an age recipient (expected age1... or an ssh-ed25519 public key; make one with 'dumpsafe keygen')")


def parse_recipients(texts: list[str]) -> list[Any]:
    return [parse_recipient(t) for t in texts]


def keygen() -> tuple[str, str, str]:
    """A new identity: (file text with comments, identity, recipient)."""
    ident = x25519.Identity.generate()
    recipient = str(ident.to_public())
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {recipient}\n{ident}\n"
    return text, str(ident), recipient


def load_identities(explicit: Path | None, configured: Path | None, what: str) -> list[Any]:
    """Identities from --identity, else the tenant's identity_file, else $DUMPSAFE_AGE_IDENTITY."""
    path = explicit or configured or (Path(os.environ[IDENTITY_ENV]) if os.environ.get(IDENTITY_ENV) else None)
    if path is None:
        raise UsageError(
            f"{what} is encrypted: pass --identity FILE (or set identity_file for the tenant, or {IDENTITY_ENV})"
        )
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read age identity file {path} ({e.strerror}); check the path") from None
    idents = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            idents.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            try:
                idents.append(ssh.Identity.from_buffer(Path(path).read_bytes()))
                break
            except Exception:
                raise ConfigError(f"{path} is not an age identity file (expected AGE-SECRET-KEY-... lines)") from None
    if not idents:
        raise ConfigError(f"{path} holds no age identity (expected AGE-SECRET-KEY-... lines)")
    return idents


def write_identity(path: Path, text: str) -> None:
    """Write an identity file readable by its owner only; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists (choose another --output; dumpsafe never overwrites a key)") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
