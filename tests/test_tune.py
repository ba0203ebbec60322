"""`recstack tune`: the split never reaches the test part; the best config loads back via --config."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optuna")

from recstack.cli import main  # noqa: E402
from recstack.evaluate import get_protocol  # noqa: E402
from recstack.tune import tune, tuning_split  # noqa: E402

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
    rc = main(["tune", "biased-mf", "--protocol", "ml100k-folds", "--trials", "3", "-p", "epochs=3",
               "-p", "early_stopping=false", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads(out.read_text())
    assert summary["config"] == config and summary["n_trials"] == 3
    assert config["epochs"] == 3 and config["early_stopping"] is False
    rc = main(["evaluate", "biased-mf", "--protocol", "ml100k-folds", "--folds", "1",
               "--config", str(out), "--json"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["config"] == config
    assert np.isfinite(record["metrics"]["rmse"])


def test_cli_tune_refuses_unknown_parameter(capsys):
    rc = main(["tune", "biased-mf", "--protocol", "ml100k-folds", "--trials", "1", "-p", "nope=1"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_tune_refuses_a_ranking_model_on_a_rating_protocol(ml100k):
    from recstack.errors import RecstackError

    split = tuning_split("ml100k-folds", ml100k)
    with pytest.raises(RecstackError, match="does not estimate ratings"):
        tune("popular", split, 1)
