"""`recstack tune`: the split never reaches the test part; the best config loads back via --config."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optuna")

from recstack.cli import main  # noqa: E402
from recstack.evaluate import get_protocol  # noqa: E402
from recstack.tune import tune, tuning_split, tuning_splits  # noqa: E402

FAST = {"epochs": 3, "early_stopping": False}


def _keys(data) -> set[tuple[int, int]]:
    return set(zip(data.user.tolist(), data.item.tolist()))


@pytest.mark.parametrize("protocol", ["ml100k-folds", "random-80-20", "msr-75", "leave-last-out"])
def test_tuning_split_holds_no_test_row(ml100k, protocol):
    """Both tuning parts come from the protocol's training side; no test row is in either."""
    fold = get_protocol(protocol).make_folds(ml100k, 0)[0]
    split = tuning_split(protocol, ml100k)
    allowed = _keys(fold.train) | (_keys(fold.valid) if fold.valid is not None else set())
    test = _keys(fold.test)
    assert len(_keys(ml100k)) == len(ml100k)  # (user, item) identifies a row in ML-100K
    for part in (split.train, split.valid):
        rows = _keys(part)
        assert rows <= allowed and not rows & test
    assert not _keys(split.train) & _keys(split.valid)
    assert split.task == ("rating" if protocol in ("ml100k-folds", "random-80-20") else "topn")
    if protocol == "leave-last-out":
        assert _keys(split.valid) == _keys(fold.valid)
    if protocol == "msr-75":  # the same stratified rule: about 75% of each item's train rows
        assert len(split.train) / len(fold.train) == pytest.approx(0.75, abs=0.01)


def test_tune_seeded_fixed_and_sane(ml100k):
    split = tuning_split("ml100k-folds", ml100k)
    a = tune("biased-mf", split, 3, fixed={**FAST, "factors": "7"}, seed=3)
    b = tune("biased-mf", split, 3, fixed={**FAST, "factors": "7"}, seed=3)
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert a.best_value == b.best_value
    assert all(t["params"]["factors"] == 7 and t["params"]["epochs"] == 3 for t in a.trials)
    assert len({t["params"]["reg"] for t in a.trials}) == 3  # the free parameters are searched
    assert a.objective == "rmse" and a.direction == "minimize"
    assert a.best_value == min(t["value"] for t in a.trials)
    assert 0.85 < a.best_value < 1.3  # a real RMSE on ML-100K ratings
    assert a.config["factors"] == 7 and "reg_bias" in a.config  # full config: defaults included


def test_tune_topn_maximises_ndcg(ml100k):
    split = tuning_split("msr-75", ml100k)
    r = tune("biased-mf", split, 2, fixed={**FAST, "factors": 4})
    assert r.objective == "ndcg@10" and r.direction == "maximize"
    assert r.best_value == max(t["value"] for t in r.trials)
    assert 0.0 <= r.best_value <= 1.0


def test_cli_tune_writes_a_config_evaluate_accepts(tmp_path, capsys):
    out = tmp_path / "biased-mf.json"
    rc = main(["tune", "biased-mf", "--protocol", "random-80-20", "--trials", "3", "-p", "epochs=3",
               "-p", "early_stopping=false", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads(out.read_text())
    assert summary["config"] == config and summary["n_trials"] == 3
    assert config["epochs"] == 3 and config["early_stopping"] is False
    chosen = config["chosen"]
    assert chosen["protocol"] == "random-80-20" and chosen["trials"] == 3 and chosen["seed"] == 0
    assert chosen["carve"] == "validation_split(fold train, 0.1, seed 0)" and chosen["metric"] == "validation rmse"
    assert chosen["value"] == pytest.approx(summary["best_value"], abs=1e-6) and chosen["commit"]
    rc = main(["evaluate", "biased-mf", "--protocol", "random-80-20", "--config", str(out), "--json"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["config"] == {k: v for k, v in config.items() if k != "chosen"}  # provenance kept aside
    assert record["config_provenance"] == chosen
    assert np.isfinite(record["metrics"]["rmse"])


def test_nested_tuning_chooses_per_fold_and_evaluate_applies_each_fold(ml100k, tmp_path, capsys):
    """ml100k-folds: one search per fold on a carve of THAT fold's training part; one file, five choices."""
    splits = tuning_splits("ml100k-folds", ml100k)
    assert list(splits) == ["u1", "u2", "u3", "u4", "u5"]
    for fold in get_protocol("ml100k-folds").make_folds(ml100k, 0):
        split = splits[fold.name]
        test = _keys(fold.test)
        assert not (_keys(split.train) | _keys(split.valid)) & test  # this fold's test rows: never seen
        assert len(split.train) + len(split.valid) == len(fold.train)
    out = tmp_path / "per-fold.json"
    rc = main(["tune", "biased-mf", "--protocol", "ml100k-folds", "--trials", "2", "-p", "epochs=2",
               "-p", "early_stopping=false", "-p", "factors=4", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads(out.read_text())
    assert set(config) == {"folds", "chosen"} and list(config["folds"]) == ["u1", "u2", "u3", "u4", "u5"]
    assert set(config["chosen"]["value"]) == set(config["folds"]) and config["chosen"]["trials"] == 2
    regs = {name: c["reg"] for name, c in config["folds"].items()}
    for name, fold_summary in summary["folds"].items():
        assert fold_summary["config"] == config["folds"][name]
    rc = main(["evaluate", "biased-mf", "--protocol", "ml100k-folds", "--folds", "2", "--config", str(out),
               "--seed", "3", "--json"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert {n: c["reg"] for n, c in record["config"]["folds"].items()} == {n: regs[n] for n in ("u1", "u2")}
    assert all(c["seed"] == 3 for c in record["config"]["folds"].values())  # --seed sets the model's seed
    assert record["config_provenance"] == config["chosen"]


def test_seed_option_overrides_a_config_seed(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"factors": 4, "epochs": 2, "early_stopping": False, "seed": 5}))
    rc = main(["evaluate", "biased-mf", "--protocol", "ml100k-folds", "--folds", "1", "--config", str(cfg),
               "--seed", "2", "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["config"]["seed"] == 2


def test_train_refuses_a_per_fold_config(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"folds": {"u1": {"factors": 4}}, "chosen": {}}))
    rc = main(["train", "biased-mf", "--config", str(cfg), "--out", str(tmp_path / "m")])
    assert rc == 2 and "one choice per fold" in capsys.readouterr().err


def test_cli_tune_refuses_unknown_parameter(capsys):
    rc = main(["tune", "biased-mf", "--protocol", "ml100k-folds", "--trials", "1", "-p", "nope=1"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_tune_refuses_a_ranking_model_on_a_rating_protocol(ml100k):
    from recstack.errors import RecstackError

    split = tuning_split("ml100k-folds", ml100k)
    with pytest.raises(RecstackError, match="does not estimate ratings"):
        tune("popular", split, 1)
