"""Passwords of ``[[web.user]]``: scrypt hashes (RFC 7914, :func:`hashlib.scrypt`), never the password.

Format ``scrypt$N$r$p$salt_hex$hash_hex`` (N = 2**15, r = 8, p = 1: about 32 MB and 0.1 s a check).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1
_MAXMEM = 64 * 2**20


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)
