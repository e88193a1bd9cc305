"""``.zarr`` stores named by URL (``s3://``, ``gs://``, ``memory://``, ``file://``), through fsspec.

A URL names a ``.zarr`` store only: PNG, TIFF and ``.npy`` are local paths (their
readers map and seek local files).  ``file://`` URLs are local paths written another
way, and become them (:func:`local_path`), so every local check holds for them.  Other
URLs go through fsspec, which dask installs; the packages for remote file systems
(s3fs, gcsfs) are not convcli's dependencies: a URL whose file system is not installed
is refused before any work, with one line naming the package.

An output store is written under a temporary name beside it (``.NAME.XXXXXXXX.tmp``)
and moved into place when whole (:func:`atomic_store`); a failed or interrupted write
removes the temporary store.  On an object store (S3, GCS) a move is a copy then a
delete, so a reader may see the store half-moved while the move runs; the temporary
store is never seen under the output's name before the write is done.

Standard library only at import: the run planner imports this module; fsspec is imported
when a URL is met.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from contextlib import contextmanager

from ..errors import ConvcliError, describe
from ..signals import committed, deferred

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)
# Names a protocol is known by; the first is the one compared (the same store either way).
ALIASES = {"s3a": "s3", "gcs": "gs", "local": "file"}
# The package a protocol's file system comes in, for the message when it is missing.
PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "hf": "huggingface_hub"}


def is_url(path) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path.

    >>> is_url("s3://bucket/huge.zarr"), is_url("memory://x.zarr"), is_url("out/x.zarr"), is_url("C:/x")
    (True, True, False, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def protocol(url: str) -> str:
    """The URL's protocol, aliases folded: ``s3a://`` is ``s3``."""
    name = _URL.match(url).group(1).lower()
    return ALIASES.get(name, name)


def local_path(path):
    """A ``file://`` URL as the local path it names; anything else as it is.

    >>> local_path("file:///tmp/a.zarr"), local_path("memory://a.zarr"), local_path("x.png")
    ('/tmp/a.zarr', 'memory://a.zarr', 'x.png')
    """
    if is_url(path) and protocol(path) == "file":
        from urllib.parse import unquote

        rest = _URL.match(path).group(2)
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        return unquote(rest) if rest.startswith("/") else unquote("/" + rest)
    return path


def url_key(url: str) -> tuple[str, str, str]:
    """What tells a store apart however its URL is written: the protocol (aliases folded) and
    the path, its ``.``, ``..``, doubled and trailing slashes resolved.

    >>> url_key("memory://b/x.zarr/") == url_key("memory:///b//./x.zarr")
    True
    >>> url_key("s3a://bucket/a/../x.zarr") == url_key("s3://bucket/x.zarr")
    True
    """
    rest = _URL.match(url).group(2).split("?", 1)[0]
    return ("url", protocol(url), posixpath.normpath("/" + rest.lstrip("/")))


def join(url: str, *names: str) -> str:
    """``url`` with ``names`` appended as path parts.

    >>> join("s3://bucket/out/", "x-conv.zarr"), join("memory://out", "a", "b.zarr")
    ('s3://bucket/out/x-conv.zarr', 'memory://out/a/b.zarr')
    """
    parts = [url.rstrip("/")] + [n.strip("/") for n in names if n and n.strip("/") not in ("", ".")]
    return "/".join(parts)


def parent(url: str) -> str:
    """The URL of the folder (prefix) holding ``url``.

    >>> parent("s3://bucket/in/x.zarr"), parent("memory://x.zarr/")
    ('s3://bucket/in', 'memory://')
    """
    head, _, _ = url.rstrip("/").rpartition("/")
    return head if not head.endswith(":/") else head + "/"


def check_url(url: str, what: str) -> None:
    """Refuse, before any work, a URL convcli cannot use: one that does not name a ``.zarr``
    store, or whose file system is not installed (one line naming the package)."""
    from pathlib import PurePosixPath

    where = f"{what} {url!r}"
    if PurePosixPath(url.rstrip("/")).suffix.lower() != ".zarr":
        raise ConvcliError(
            f"{where}: URLs name .zarr stores only; PNG, TIFF and .npy files are read and "
            f"written as local paths"
        )
    filesystem_class(url, where)


def filesystem_class(url: str, where: str):
    name = protocol(url)
    try:
        import fsspec
    except ImportError:
        raise ConvcliError(f"{where}: URLs are opened with fsspec: pip install 'convcli[dask]'") from None
    try:
        return fsspec.get_filesystem_class(name)
    except ImportError:
        package = PACKAGES.get(name)
        hint = f"pip install {package}" if package else "install the fsspec file system for it"
        need = f"the {package} package" if package else "a file system fsspec does not have here"
        raise ConvcliError(f"{where}: {name}:// URLs need {need}: {hint}") from None
    except ValueError:
        raise ConvcliError(f"{where}: {name}:// is not a protocol fsspec knows") from None


def filesystem(url: str, where: str):
    """``(file system, path within it)`` for ``url``."""
    cls = filesystem_class(url, where)
    try:
        fs = cls(**({"auto_mkdir": True} if protocol(url) == "file" else {}))
    except Exception as exc:  # noqa: BLE001  (a file system may fail to start in many ways)
        raise ConvcliError(f"{where}: cannot open its file system ({describe(exc)})") from None
    return fs, cls._strip_protocol(url).rstrip("/") or "/"


def exists(path, what: str = "output") -> bool:
    """Whether a local path or a store named by URL exists."""
    if not is_url(path):
        return os.path.exists(path)
    fs, root = filesystem(path, f"{what} {path!r}")
    try:
        return bool(fs.exists(root))
    except Exception as exc:  # noqa: BLE001  (a remote store fails in many ways)
        raise ConvcliError(f"{what} {path!r}: cannot be reached ({describe(exc)})") from None


@contextmanager
def atomic_store(url: str):
    """A temporary store URL beside ``url`` (``.NAME.XXXXXXXX.tmp``) for the block to write;
    when the block ends it is moved over ``url`` (an existing store there moved aside first,
    and removed once the new one is in place).  A failure or a signal during the block removes
    the temporary store and leaves an existing store as it was; an OSError becomes a
    ConvcliError naming ``url``."""
    where = f"output {url!r}"
    fs, root = filesystem(url, where)
    head, _, name = root.rpartition("/")
    scheme = protocol(url)

    def sibling() -> str:
        return f"{head}/.{name}.{secrets.token_hex(4)}.tmp"

    tmp, old = sibling(), None
    try:
        yield f"{scheme}://{tmp}"
        with deferred():  # the swap is never left halfway
            if fs.exists(root):
                old = sibling()
                fs.mv(root, old, recursive=True)
            fs.mv(tmp, root, recursive=True)
            committed()
    except BaseException as exc:
        _remove(fs, tmp)
        if old is not None and not fs.exists(root):
            fs.mv(old, root, recursive=True)
            old = None
        if isinstance(exc, OSError):
            raise ConvcliError(f"{where}: cannot be written ({describe(exc)})") from None
        raise
    finally:
        if old is not None:
            _remove(fs, old)


def _remove(fs, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception:  # noqa: BLE001  (clean-up on the way out: the first error is the one told)
        pass
