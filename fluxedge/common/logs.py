"""Structured, quiet-by-default logging: one line per event, ``event key=value ...``."""

from __future__ import annotations

import logging
import sys


def setup(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pymodbus logs every timeout as an ERROR with frame dumps; the poller reports them itself
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    for noisy in ("urllib3", "influxdb_client", "aiobotocore", "botocore", "s3fs", "fsspec", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return f'"{text}"' if " " in text else text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``name k=v ...`` at ``level``."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", name, " ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))
