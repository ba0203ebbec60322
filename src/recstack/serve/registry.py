"""The model registry: a folder of immutable versions plus an `ACTIVE` pointer.

    REGISTRY/
      versions/1/       a saved model folder (copied in; never changed afterwards)
      versions/1/registry.json   model, config, data fingerprint, metrics, created, parent, source
      ACTIVE            the active version number, replaced atomically (temp file + fsync + rename)
      history.json      activations in order, for rollback

`add` copies a valid saved model folder (it must load) into the next version; the first version
becomes active. `activate` compares the candidate's recorded validation metrics with the active
version's and refuses a clearly worse one unless forced; `rollback` re-activates the version that
was active before the current one. A service watches `ACTIVE` and swaps models when it changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recstack.errors import ConfigError, DataError, RecstackError

log = logging.getLogger("recstack.serve")

# metrics where lower is better; every other recorded metric counts higher-is-better
LOWER_IS_BETTER = ("rmse", "mae", "loss", "valid_rmse", "train_rmse")
# metrics that are not validation quality and take no part in the comparison
NOT_QUALITY = ("fit_seconds", "predict_seconds", "epochs", "best_epoch", "train_rmse", "peak_memory_mb")
# a candidate is "clearly worse" when a common metric is worse by more than this fraction
TOLERANCE = 0.02


class RegistryError(RecstackError):
    """A registry operation that cannot be done (unknown version, worse candidate, bad folder)."""


@dataclass(frozen=True)
class Version:
    """One registered version: its number, folder and metadata."""

    number: int
    path: Path
    meta: dict[str, Any]


class Registry:
    """A model registry rooted at `root` (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @staticmethod
    def is_registry(path: str | Path) -> bool:
        """Whether `path` is a registry folder (has versions/)."""
        return (Path(path) / "versions").is_dir()

    # ---- reading -------------------------------------------------------------------------
    def versions(self) -> list[Version]:
        """Every version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        out = []
        for child in self.versions_dir.iterdir():
            if child.name.isdigit() and (child / "registry.json").exists():
                out.append(self.get(int(child.name)))
        return sorted(out, key=lambda v: v.number)

    def get(self, number: int) -> Version:
        path = self.versions_dir / str(int(number))
        meta_file = path / "registry.json"
        if not meta_file.exists():
            known = ", ".join(str(v.number) for v in self.versions()) or "none"
            raise RegistryError(f"{self.root}: no version {number} (versions: {known})")
        return Version(int(number), path, json.loads(meta_file.read_text()))

    def active(self) -> int | None:
        """The active version number, or None for an empty registry."""
        try:
            text = (self.root / "ACTIVE").read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise DataError(f"ACTIVE holds {text!r}, not a version number", path=self.root / "ACTIVE")
        return int(text)

    def active_version(self) -> Version:
        number = self.active()
        if number is None:
            raise RegistryError(f"{self.root}: the registry has no active version (add one first)")
        return self.get(number)

    def history(self) -> list[int]:
        try:
            return [int(v) for v in json.loads((self.root / "history.json").read_text())]
        except FileNotFoundError:
            return []

    def list(self) -> list[dict[str, Any]]:
        """One record per version (number, active flag, metadata) for `registry list` and the API."""
        active = self.active()
        return [{"version": v.number, "active": v.number == active, **v.meta} for v in self.versions()]

    # ---- writing -------------------------------------------------------------------------
    def add(self, model_dir: str | Path, activate_first: bool = True) -> int:
        """Copy a saved model folder in as the next version; returns its number.

        The folder must load as a saved model (so `/etc` or any other folder is refused).
        The first version of a new registry becomes active.
        """
        from recstack.persist import load_model

        src = Path(model_dir)
        try:
            if not src.is_dir():
                raise RegistryError(f"{str(src)[:300]}: not a folder (give a model folder written by `recstack train`)")
            saved = load_model(src)
        except OSError as exc:
            raise RegistryError(f"{str(src)[:300]}: not a saved model folder ({exc.strerror})") from None
        except RegistryError:
            raise
        except RecstackError as exc:
            raise RegistryError(f"{src}: not a saved model folder ({exc})") from None
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        parent = self.active()
        info = saved.info
        meta = {"model": info.get("model"), "config": info.get("config", {}), "data": info.get("data", {}),
                "metrics": info.get("metrics", {}), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "parent": parent, "source": str(src.resolve())}
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.versions_dir))
        try:
            for name in ("model.json", "arrays.npz", "train.npz", "vocab.json", "items.json", "users.json"):
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
            for extra in src.iterdir():  # model-specific files (e.g. torch state), never links
                if extra.is_file() and not extra.is_symlink() and not (tmp / extra.name).exists():
                    shutil.copy2(extra, tmp / extra.name)
            (tmp / "registry.json").write_text(json.dumps(meta, indent=2, default=str))
            number = max([v.number for v in self.versions()] + [0]) + 1
            while True:  # another process may take a number at the same time
                try:
                    os.rename(tmp, self.versions_dir / str(number))
                    break
                except OSError:
                    number += 1
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if parent is None and activate_first:
            self._point(number)
        return number

    def activate(self, number: int, force: bool = False) -> dict[str, Any]:
        """Make `number` active; refuses a clearly worse candidate unless `force`.

        Returns {"version", "previous", "warning"}: the warning says when the two versions
        recorded no common metric (activated anyway) or when a worse one was forced.
        """
        candidate = self.get(number)
        current = self.active()
        warning = None
        if current is not None and current != number:
            verdict = compare_metrics(candidate.meta.get("metrics", {}), self.get(current).meta.get("metrics", {}))
            if verdict["common"] == []:
                warning = (f"versions {number} and {current} recorded no common validation metric; "
                           "activated without a comparison")
            elif verdict["worse"]:
                text = "; ".join(verdict["worse"])
                if not force:
                    raise RegistryError(f"version {number} is clearly worse than active version {current} "
                                        f"({text}); use force to activate it anyway")
                warning = f"forced: {text}"
        if warning:
            log.warning("registry %s: %s", self.root, warning)
        self._point(number)
        return {"version": number, "previous": current, "warning": warning}

    def rollback(self) -> dict[str, Any]:
        """Re-activate the version active before the current one (no metric check)."""
        hist = self.history()
        if len(hist) < 2:
            raise RegistryError(f"{self.root}: nothing to roll back to (activation history: {hist})")
        target = hist[-2]
        self.get(target)
        current = self.active()
        self._point(target, history=hist[:-1])
        return {"version": target, "previous": current, "warning": None}

    def _point(self, number: int, history: list[int] | None = None) -> None:
        hist = self.history() + [number] if history is None else history
        _atomic_write(self.root / "history.json", json.dumps(hist))
        _atomic_write(self.root / "ACTIVE", f"{number}\n")


def compare_metrics(candidate: dict[str, Any], active: dict[str, Any]) -> dict[str, Any]:
    """Common quality metrics of two versions and which of them the candidate is clearly worse on."""
    common = sorted(k for k in candidate if k in active and k not in NOT_QUALITY
                    and isinstance(candidate[k], (int, float)) and isinstance(active[k], (int, float)))
    worse = []
    for key in common:
        new, old = float(candidate[key]), float(active[key])
        lower = key in LOWER_IS_BETTER or key.split("@")[0] in LOWER_IS_BETTER
        margin = TOLERANCE * max(abs(old), 1e-12)
        if (lower and new > old + margin) or (not lower and new < old - margin):
            worse.append(f"{key} {new:.4g} vs {old:.4g}")
    return {"common": common, "worse": worse}


def _atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_model_dir(path: str | Path) -> tuple[Path, int | None]:
    """(model folder, version) for a serve PATH: a registry's active version, or a plain model folder."""
    p = Path(path)
    if Registry.is_registry(p):
        v = Registry(p).active_version()
        return v.path, v.number
    if (p / "model.json").exists():
        return p, None
    raise ConfigError(f"{p}: neither a model registry (versions/) nor a saved model folder (model.json)")
