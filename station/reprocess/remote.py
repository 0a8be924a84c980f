"""Raw files in object storage: ``s3://bucket/raw/<station>/...`` (or any fsspec URL) for ``flux process``.

fsspec (installed with Dask, the ``cluster`` extra) names the stores; the protocol's own package
comes from the user (``s3fs`` for S3 and S3-compatible stores such as MinIO or Ceph, the ``s3``
extra; ``gcsfs``, ``adlfs`` ...), and its credentials and endpoint from the usual places
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ~/.aws ...). A work item's remote files are copied
into a temporary directory of the process that computes them (a worker's local disk), read there
by the same readers as local files and deleted afterwards: one sequential download of ~2.5 MB per
half hour, small beside its computing. Outcomes and messages name the URL, not the copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO


class RemoteError(Exception):
    """A URL that cannot be used (no fsspec, an unknown protocol, no such bucket): one line."""


def is_url(path: str | os.PathLike) -> bool:
    """``s3://...``, ``gs://...``, ``memory://...``: a store fsspec opens (``file://`` is local)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def _filesystem(url: str):
    try:
        import fsspec
    except ImportError:
        raise RemoteError(f"{url}: reading URLs needs fsspec: pip install 'fluxedge[cluster]'") from None
    try:
        fs, _, _ = fsspec.get_fs_token_paths(url)
    except (ImportError, ValueError) as exc:  # the protocol's package is not installed, or unknown
        raise RemoteError(f"{url}: {exc}") from None
    return fs


def name_of(path: str) -> str:
    """The file name of a path or URL."""
    return PurePosixPath(path.split("://", 1)[-1]).name


def open_binary(url: str) -> BinaryIO:
    """An open, seekable binary file of ``url`` (read in ranges as it is read)."""
    return _filesystem(url).open(url, "rb")


@contextlib.contextmanager
def local_copies(paths: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """``paths`` with each URL replaced by a downloaded copy that keeps its file name (the readers
    take times and formats from names); local paths stay as they are. The copies go when the block
    ends. OSError (a missing object, a refused request) names the URL."""
    if not any(is_url(p) for p in paths):
        yield paths
        return
    with tempfile.TemporaryDirectory(prefix="fluxedge-remote-") as tmp:
        local = []
        for k, path in enumerate(paths):
            if not is_url(path):
                local.append(path)
                continue
            target = os.path.join(tmp, str(k), name_of(path))
            os.makedirs(os.path.dirname(target))
            try:
                _filesystem(path).get_file(path, target)
            except RemoteError:
                raise
            except Exception as exc:  # each store raises its own kinds (botocore, aiohttp ...)
                raise OSError(f"{path}: cannot download: {exc}") from None
            local.append(target)
        yield tuple(local)


def stations_in(root: str, patterns: tuple[str, ...]) -> dict[str, list[str]]:
    """``root/<station>/**/<pattern>`` in a store: station -> its files' URLs, sorted."""
    fs = _filesystem(root)
    protocol = root.split("://", 1)[0]
    base = root.split("://", 1)[1].rstrip("/")
    try:
        found = fs.find(base)
    except FileNotFoundError:
        raise RemoteError(f"{root}: no such directory in the store") from None
    except Exception as exc:
        raise RemoteError(f"{root}: cannot list: {exc}") from None
    out: dict[str, list[str]] = {}
    for key in sorted(found):
        rel = PurePosixPath(key).relative_to(base)
        if len(rel.parts) < 2 or not any(rel.match(p) for p in patterns):
            continue
        out.setdefault(rel.parts[0], []).append(f"{protocol}://{key}")
    return out
