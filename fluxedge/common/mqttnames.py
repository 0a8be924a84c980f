"""MQTT names in configs, checked alike for the station and the collector: the broker's host, and
topic levels (the topic prefix, a shared-subscription group)."""

from __future__ import annotations

import ipaddress
import re

#: longest topic prefix and share group name [bytes of UTF-8]
MAX_LEVEL_BYTES = 64
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def control_chars(value: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


def host_problem(value: str) -> str | None:
    """Why ``value`` is not a host name or IP address, or None."""
    if not value:
        return 'must not be empty: the host name or IP address, e.g. "127.0.0.1"'
    if "/" in value:
        return f"must be a host name or IP address, not a URL, got {value!r}"
    if value.startswith("["):
        return f"an IPv6 address goes without brackets, got {value!r}"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if ":" in value:
        return f"must be a host name or IP address without a port (the port is its own key), got {value!r}"
    if len(value) > 253 or not _HOSTNAME.fullmatch(value):
        return f"is not a host name or IP address, got {value[:80]!r}"
    return None


def one_level(what: str):
    """A single topic level: no wildcards, no '/', no control characters, 1..MAX_LEVEL_BYTES bytes."""
    def check_level(value: str) -> str | None:
        if not value:
            return f"must not be empty ({what})"
        if any(c in value for c in "+#/") or control_chars(value):
            return f"must be one MQTT topic level, no '+', '#', '/' or control characters, got {value!r} ({what})"
        if len(value.encode()) > MAX_LEVEL_BYTES:
            return f"must be at most {MAX_LEVEL_BYTES} bytes, got {len(value.encode())}"
        return None
    return check_level


_prefix_level = one_level("stations publish under PREFIX/v1/STATION/KIND")


def topic_prefix_problem(value: str) -> str | None:
    if value.startswith("$"):
        return f"must not start with '$' (topics for the broker itself: $SYS, $share), got {value!r}"
    return _prefix_level(value)
