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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import recstack
from recstack.data.interactions import Interactions
from recstack.errors import DataError, OutputError
from recstack.models.base import Model, get_model_class

if TYPE_CHECKING:  # pandas only for the feature files, imported when there are some
    import pandas as pd

FORMAT = 2  # 2: model.json records every array's shape and dtype ("arrays"); 1 did not
MODEL_FILES = frozenset({"model.json", "arrays.npz", "train.npz", "vocab.json", "items.json", "users.json"})
SEED_FILES = frozenset({"user_embeddings.npy", "item_embeddings.npy", "user_id_map.json",
                        "item_id_map.json"})
# learned arrays whose first axis runs over users / items, checked on load in every format
USER_ROWS = ("user_factors_", "user_bias_")
ITEM_ROWS = ("item_factors_", "item_bias_")


@dataclass
class SavedModel:
    """What a model folder holds: the fitted model, its training data, and the record."""

    model: Model
    train: Interactions
    info: dict[str, Any] = field(default_factory=dict)


def save_model(path: str | Path, model: Model, train: Interactions,
               metrics: dict[str, float] | None = None) -> Path:
    """Write `model` (fitted on `train`) to folder `path`, atomically (temp folder + rename).

    `path` may be new, an empty folder or an earlier model folder (replaced as a whole);
    anything else is refused with `OutputError` and left untouched.
    """
    final = check_model_target(path)
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
            "arrays": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                       for k, v in arrays.items()},
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
        _swap_in(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def is_model_folder(path: str | Path) -> bool:
    """True for a folder written by `save_model`: a recstack model.json and only its files."""
    folder = Path(path)
    if not folder.is_dir() or not (folder / "model.json").is_file():
        return False
    if any(entry.name not in MODEL_FILES for entry in folder.iterdir()):
        return False
    try:
        info = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "model" in info and "format" in info


def check_model_target(path: str | Path) -> Path:
    """`path` as a Path when `save_model` may write there; else `OutputError` naming it."""
    return _check_folder_target(Path(path), is_model_folder, "a recstack model folder")


def _check_folder_target(folder: Path, replaceable: Callable[[Path], bool], what: str) -> Path:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        what_is = "a link" if folder.is_symlink() else "a file"
        raise OutputError(f"{folder}: is {what_is}, not a folder; refusing to replace it "
                          "(choose a new or empty folder)")
    if folder.is_dir() and any(folder.iterdir()) and not replaceable(folder):
        raise OutputError(f"{folder}: folder is not empty and is not {what}; refusing to "
                          "write there, nothing was changed (choose a new or empty folder)")
    return folder


def _swap_in(tmp: Path, final: Path) -> None:
    """Put the finished folder `tmp` at `final`: the old one is renamed away, the new one
    renamed in, then the old one deleted; a failed rename puts the old one back."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
    old.rmdir()
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


# what an existing JSON file must be for `write_json_file` to replace it
JSON_KINDS: dict[str, Callable[[Any], bool]] = {
    "result record": lambda obj: isinstance(obj, dict) and "protocol" in obj and "metrics" in obj,
    "config file": lambda obj: isinstance(obj, dict),
}


def check_json_target(path: str | Path, kind: str) -> Path:
    """`path` as a Path when `write_json_file(path, ..., kind)` may write there; else `OutputError`.

    A new file, or an existing JSON file of `kind` (a key of `JSON_KINDS`) may be written; a
    folder or any other file is refused and left untouched.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, expected a file name; nothing was changed")
    if target.exists():
        try:
            old = json.loads(target.read_text())
        except (OSError, ValueError):
            old = None
        if old is None or not JSON_KINDS[kind](old):
            raise OutputError(f"{target}: exists and is not a {kind}; refusing to overwrite it "
                              "(choose another file name)")
    return target


def write_json_file(path: str | Path, obj: Any, kind: str) -> Path:
    """Write `obj` as JSON to file `path` (parent folders created; temp file + rename), after
    `check_json_target(path, kind)`."""
    target = check_json_target(path, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(obj, indent=2, default=_json_or_str) + "\n")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_model(path: str | Path) -> SavedModel:
    """Load a folder written by `save_model`; a missing or damaged file is named in the error.

    Checks the format version (a newer one is refused), every array's shape and dtype against
    model.json, and the sizes of the vocabularies, training arrays and factor matrices.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError("no such model folder", path=folder)
    info = _read_json(folder / "model.json")
    if not isinstance(info, dict) or "model" not in info:
        raise DataError("not a recstack model record (no 'model' key)", path=folder / "model.json")
    fmt = info.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise DataError(f"unknown model format {fmt!r}", path=folder / "model.json")
    if fmt > FORMAT:
        raise DataError(f"model format {fmt} was written by a newer recstack "
                        f"({info.get('version', '?')}); this recstack ({recstack.__version__}) reads "
                        f"formats up to {FORMAT}: upgrade recstack", path=folder / "model.json")
    cls = get_model_class(info["model"])
    model = cls(info.get("config", {}))
    arrays = _read_npz(folder / "arrays.npz")
    vocab = _read_json(folder / "vocab.json")
    if not (isinstance(vocab, dict) and isinstance(vocab.get("users"), list)
            and isinstance(vocab.get("items"), list)):
        raise DataError("expected {\"users\": [...], \"items\": [...]}", path=folder / "vocab.json")
    n_users, n_items = len(vocab["users"]), len(vocab["items"])
    _check_arrays(folder, info, arrays, n_users, n_items)
    try:
        model.set_state(arrays, info.get("state", {}))
    except DataError as exc:
        raise DataError(str(exc), path=folder / "arrays.npz") from None
    t = _read_npz(folder / "train.npz")
    _check_train(folder / "train.npz", t, n_users, n_items)
    item_features = _read_frame(folder / "items.json")
    user_features = _read_frame(folder / "users.json")
    train = Interactions(
        np.asarray(vocab["users"], dtype=str), np.asarray(vocab["items"], dtype=str),
        t["user"], t["item"], t["rating"], t["timestamp"],
        item_features, user_features, info.get("data", {}).get("name", "custom"),
    )
    return SavedModel(model, train, info)


def _check_arrays(folder: Path, info: dict[str, Any], arrays: dict[str, np.ndarray],
                  n_users: int, n_items: int) -> None:
    """Shapes and dtypes as recorded (format ≥ 2) and the vocabulary sizes (every format)."""
    npz, record = folder / "arrays.npz", folder / "model.json"
    data, state = info.get("data", {}), info.get("state", {})
    for key, n in (("n_users", n_users), ("n_items", n_items)):
        for where, value in ((f"data.{key}", data.get(key)), (f"state.{key}_", state.get(key + "_"))):
            if value is not None and value != n:
                raise DataError(f"{where} = {value} but vocab.json holds {n} {key[2:]}", path=record)
    recorded = info.get("arrays")
    if recorded is not None:
        for name, spec in recorded.items():
            if name not in arrays:
                raise DataError(f"array {name!r} is missing", path=npz)
            got = arrays[name]
            if list(got.shape) != list(spec.get("shape", [])) or str(got.dtype) != spec.get("dtype"):
                raise DataError(f"array {name!r} has shape {got.shape} and dtype {got.dtype}; "
                                f"model.json records {tuple(spec.get('shape', []))} {spec.get('dtype')}",
                                path=npz)
        extra = sorted(set(arrays) - set(recorded))
        if extra:
            raise DataError(f"unexpected array(s) {', '.join(extra)} not recorded in model.json", path=npz)
    for names, n, what in ((USER_ROWS, n_users, "users"), (ITEM_ROWS, n_items, "items")):
        for name in names:
            if name in arrays and (arrays[name].ndim == 0 or arrays[name].shape[0] != n):
                raise DataError(f"array {name!r} has shape {arrays[name].shape}; expected one row "
                                f"per {what[:-1]} ({n} {what} in vocab.json)", path=npz)


def _check_train(path: Path, t: dict[str, np.ndarray], n_users: int, n_items: int) -> None:
    missing = [k for k in ("user", "item", "rating", "timestamp") if k not in t]
    if missing:
        raise DataError(f"array(s) {', '.join(missing)} missing", path=path)
    n = len(t["user"])
    for key in ("user", "item", "rating", "timestamp"):
        if t[key].ndim != 1 or len(t[key]) != n:
            raise DataError(f"array {key!r} has shape {t[key].shape}; expected ({n},)", path=path)
    for key, size in (("user", n_users), ("item", n_items)):
        if n and (t[key].min() < 0 or t[key].max() >= size):
            raise DataError(f"array {key!r} holds indices outside 0..{size - 1} (vocab.json)", path=path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("missing file (is this a model folder written by `recstack train`?)",
                        path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=path, line=exc.lineno) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    name = None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for name in z.files:
                out[name] = z[name]
            return out
    except FileNotFoundError:
        raise DataError("missing file", path=path) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        what = f"array {name!r} is unreadable" if name else "unreadable array file"
        raise DataError(f"{what} ({exc})", path=path) from None


def _read_frame(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    import pandas as pd

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


def check_seed_target(path: str | Path) -> Path:
    """`path` as a Path when `export_seed_layout` may write there; else `OutputError`."""
    return _check_folder_target(
        Path(path), lambda f: all(e.name in SEED_FILES for e in f.iterdir()),
        "an earlier seed export (" + ", ".join(sorted(SEED_FILES)) + ")")


def _json_or_str(value: Any) -> Any:
    return value.item() if isinstance(value, (np.integer, np.floating)) else str(value)


def export_seed_layout(path: str | Path, saved: SavedModel) -> Path:
    """The seed project's layout: user/item embedding .npy files plus id maps as JSON (not pickle).

    Like `save_model`: a new, empty or earlier-export folder, replaced atomically.
    """
    out = check_seed_target(path)
    model, train = saved.model, saved.train
    if not hasattr(model, "user_factors_"):
        raise DataError(f"model {model.name!r} has no embeddings to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        np.save(tmp / "user_embeddings.npy", model.user_factors_)
        np.save(tmp / "item_embeddings.npy", model.item_factors_)
        (tmp / "user_id_map.json").write_text(json.dumps(train.user_index))
        (tmp / "item_id_map.json").write_text(json.dumps(train.item_index))
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
