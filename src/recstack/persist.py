"""Saved models: a folder that needs no pickle to load.

    model.json      class name, config, data fingerprint, metrics, recstack version, scalars
    arrays.npz      learned arrays (loaded with allow_pickle=False)
    train.npz       the training interactions (indices, ratings, timestamps)
    vocab.json      {"users": [...], "items": [...]} external ids in index order
    items.json      item features, one record per item index (when the data has them)
    users.json      user features, likewise

The training interactions travel with the model so that `recommend`, the web page and the
service can exclude seen items, fall back to popular items and fold in new users.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import recstack
from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.models.base import Model, get_model_class

FORMAT = 1


@dataclass
class SavedModel:
    """What a model folder holds: the fitted model, its training data, and the record."""

    model: Model
    train: Interactions
    info: dict[str, Any] = field(default_factory=dict)


def save_model(path: str | Path, model: Model, train: Interactions,
               metrics: dict[str, float] | None = None) -> Path:
    """Write `model` (fitted on `train`) to folder `path`, atomically (temp folder + rename)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        arrays, scalars = model.get_state()
        info = {
            "format": FORMAT,
            "model": model.name,
            "class": type(model).__name__,
            "config": model.config.to_dict(),
            "state": scalars,
            "data": {"name": train.name, "sha256": train.fingerprint(), "n": len(train),
                     "n_users": train.n_users, "n_items": train.n_items},
            "metrics": metrics or {},
            "version": recstack.__version__,
        }
        (tmp / "model.json").write_text(json.dumps(info, indent=2, default=_json_default))
        np.savez(tmp / "arrays.npz", **arrays)
        np.savez(tmp / "train.npz", user=train.user, item=train.item, rating=train.rating,
                 timestamp=train.timestamp)
        vocab = {"users": train.user_ids.tolist(), "items": train.item_ids.tolist()}
        (tmp / "vocab.json").write_text(json.dumps(vocab))
        for fname, frame in (("items.json", train.item_features), ("users.json", train.user_features)):
            if frame is not None:
                (tmp / fname).write_text(frame.to_json(orient="records"))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_model(path: str | Path) -> SavedModel:
    """Load a folder written by `save_model`; a missing or damaged file is named in the error."""
    folder = Path(path)
    info = _read_json(folder / "model.json")
    if not isinstance(info, dict) or "model" not in info:
        raise DataError("not a recstack model record (no 'model' key)", path=folder / "model.json")
    cls = get_model_class(info["model"])
    model = cls(info.get("config", {}))
    arrays = _read_npz(folder / "arrays.npz")
    model.set_state(arrays, info.get("state", {}))
    t = _read_npz(folder / "train.npz")
    vocab = _read_json(folder / "vocab.json")
    item_features = _read_frame(folder / "items.json")
    user_features = _read_frame(folder / "users.json")
    train = Interactions(
        np.asarray(vocab["users"], dtype=str), np.asarray(vocab["items"], dtype=str),
        t["user"], t["item"], t["rating"], t["timestamp"],
        item_features, user_features, info.get("data", {}).get("name", "custom"),
    )
    return SavedModel(model, train, info)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("missing file (is this a model folder written by `recstack train`?)",
                        path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=path, line=exc.lineno) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError("missing file", path=path) from None
    except ValueError as exc:
        raise DataError(f"unreadable array file ({exc})", path=path) from None


def _read_frame(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    records = _read_json(path)
    frame = pd.DataFrame.from_records(records)
    if "year" in frame:
        frame["year"] = pd.to_numeric(frame["year"], errors="coerce").astype("Int64")
    if "age" in frame:
        frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype("Int64")
    return frame


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def export_seed_layout(path: str | Path, saved: SavedModel) -> Path:
    """The seed project's layout: user/item embedding .npy files plus id maps as JSON (not pickle)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model, train = saved.model, saved.train
    if not hasattr(model, "user_factors_"):
        raise DataError(f"model {model.name!r} has no embeddings to export")
    np.save(out / "user_embeddings.npy", model.user_factors_)
    np.save(out / "item_embeddings.npy", model.item_factors_)
    (out / "user_id_map.json").write_text(json.dumps(train.user_index))
    (out / "item_id_map.json").write_text(json.dumps(train.item_index))
    return out
