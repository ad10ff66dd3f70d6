"""The private key an inventory names (a file or an env var), registered as a secret; None
leaves it to ~/.ssh/config's IdentityFile, else the SSH agent."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from runner.errors import PermanentError
from runner.redact import SECRETS

from .settings import SshSettings


def private_key(settings: SshSettings, target: str) -> Any:
    """The inventory's key (None: ~/.ssh/config's IdentityFile, else the agent)."""
    import paramiko

    passphrase = None
    if settings.passphrase_env:
        passphrase = os.environ.get(settings.passphrase_env)
        if not passphrase:
            raise PermanentError(f"{settings.passphrase_env} is not set: it holds the "
                                 f"passphrase of {target}'s key")
        SECRETS.register(passphrase)
    failures = (paramiko.SSHException, ValueError, TypeError, paramiko.pkey.UnknownKeyType)
    if settings.key_file:
        path = Path(settings.key_file).expanduser()
        try:
            return paramiko.PKey.from_path(path, password=passphrase)
        except OSError as exc:
            raise PermanentError(f"{target}: cannot read key_file {path}: "
                                 f"{exc.strerror or exc}") from None
        except failures as exc:
            raise PermanentError(f"{target}: key_file {path} is not a private key paramiko "
                                 f"can use ({type(exc).__name__})") from None
    if settings.key_env:
        text = os.environ.get(settings.key_env, "")
        if not text.strip():
            raise PermanentError(f"{settings.key_env} is not set: it holds {target}'s "
                                 "private key")
        SECRETS.register(text.strip())
        for line in text.splitlines():  # a line of it, should one ever be printed alone
            if not line.startswith("-----"):
                SECRETS.register(line.strip())
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(text), password=passphrase)
            except failures:
                continue
        raise PermanentError(f"{settings.key_env} does not hold a private key paramiko can "
                             "read (OpenSSH or PEM format; Ed25519, ECDSA or RSA)")
    return None
