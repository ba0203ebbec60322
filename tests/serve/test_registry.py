"""The model registry: immutable copied versions, atomic ACTIVE pointer, refusal of worse candidates."""

from __future__ import annotations

import json
import shutil

import pytest

from recstack.serve.registry import Registry, RegistryError, compare_metrics


def _with_metrics(src, dst, **metrics):
    shutil.copytree(src, dst)
    info = json.loads((dst / "model.json").read_text())
    info["metrics"] = metrics
    (dst / "model.json").write_text(json.dumps(info))
    return dst


def test_add_activate_rollback(tmp_path, model_dirs):
    reg = Registry(tmp_path / "reg")
    assert reg.add(model_dirs[0]) == 1 and reg.active() == 1  # the first version becomes active
    assert reg.add(model_dirs[1]) == 2 and reg.active() == 1
    meta = reg.get(2).meta
    assert meta["model"] == "biased-mf" and meta["parent"] == 1 and meta["data"]["sha256"]
    assert "valid_rmse" in meta["metrics"] and meta["created"]
    assert reg.activate(2)["previous"] == 1 and reg.active() == 2
    assert reg.rollback()["version"] == 1 and reg.active() == 1
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    with pytest.raises(RegistryError, match="no version 9"):
        reg.activate(9)
    # a version never changes under the registry: it is a copy
    assert (reg.get(1).path / "arrays.npz").read_bytes() == (model_dirs[0] / "arrays.npz").read_bytes()
    assert [v["version"] for v in reg.list()] == [1, 2]


def test_refuses_clearly_worse_unless_forced(tmp_path, model_dirs):
    reg = Registry(tmp_path / "reg")
    reg.add(_with_metrics(model_dirs[0], tmp_path / "good", valid_rmse=0.93))
    reg.add(_with_metrics(model_dirs[1], tmp_path / "bad", valid_rmse=1.10))
    reg.add(_with_metrics(model_dirs[1], tmp_path / "other", ndcg=0.3))
    with pytest.raises(RegistryError, match="clearly worse.*valid_rmse"):
        reg.activate(2)
    assert reg.active() == 1
    assert "forced" in reg.activate(2, force=True)["warning"] and reg.active() == 2
    assert "no common" in reg.activate(3)["warning"]  # nothing to compare: activates with a warning


def test_refuses_folders_that_are_not_models(tmp_path):
    reg = Registry(tmp_path / "reg")
    for bad in ("/etc", str(tmp_path / "missing"), "/etc/passwd"):
        with pytest.raises(RegistryError):
            reg.add(bad)
    assert reg.versions() == [] and reg.active() is None


def test_compare_metrics_directions():
    assert compare_metrics({"rmse": 1.0}, {"rmse": 0.9})["worse"]
    assert not compare_metrics({"rmse": 0.905}, {"rmse": 0.9})["worse"]  # within the tolerance
    assert compare_metrics({"ndcg@10": 0.3}, {"ndcg@10": 0.4})["worse"]
    assert compare_metrics({"fit_seconds": 9.0}, {"fit_seconds": 1.0})["common"] == []
