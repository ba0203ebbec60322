"""`python -m benchmarks.sequential`: one record per (model, seed), read back on a rerun, and a
summary whose means, best model and target verdict follow from the records."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from benchmarks import sequential  # noqa: E402

from tests.models.test_markov import chain_data  # noqa: E402

TINY = {"factors": 16, "max_len": 10, "epochs": 3, "batch_size": 32, "learning_rate": 1e-2,
        "dropout": 0.0, "threads": 1}


def test_records_per_seed_are_resumed_and_summarised(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "gru4rec.leave-last-out.json").write_text(json.dumps(TINY))
    out = tmp_path / "results"
    data = chain_data()
    records = sequential.run(data, out, ["gru4rec"], [0, 1], configs)
    assert [r["seed"] for r in records] == [0, 1]
    for seed in (0, 1):
        stored = json.loads(sequential.record_path(out, "gru4rec", seed).read_text())
        assert stored["config"]["seed"] == seed and stored["config"]["epochs"] == 3
        assert stored["protocol"] == "leave-last-out" and stored["config_source"].endswith(".json")

    def refit(*args, **kwargs):
        raise AssertionError("a stored record was refitted")

    monkeypatch.setattr("recstack.evaluate.run_protocol", refit)
    again = sequential.run(data, out, ["gru4rec"], [0, 1], configs)
    assert again == records

    (configs / "gru4rec.leave-last-out.json").write_text(json.dumps({**TINY, "epochs": 4}))
    with pytest.raises(AssertionError, match="refitted"):  # a changed config is not read back
        sequential.run(data, out, ["gru4rec"], [0], configs)

    summ = sequential.summary(records, required_seeds=[0, 1])
    row = summ["rows"][0]
    ndcgs = [r["metrics"]["ndcg@10"] for r in records]
    assert [s["ndcg@10"] for s in row["seeds"]] == ndcgs
    assert row["mean"]["ndcg@10"] == pytest.approx(sum(ndcgs) / 2)
    assert summ["best"] == "gru4rec" and summ["met"] == (row["mean"]["ndcg@10"] >= sequential.TARGET_NDCG)


def test_best_model_and_verdict():
    def rec(model, seed, ndcg):
        return {"model": model, "seed": seed, "metrics": {"ndcg@10": ndcg, "hr@10": 2 * ndcg},
                "fit_seconds": 1.0, "folds": [{"best_epoch": 3, "epochs": 5}], "config_source": "c"}

    summ = sequential.summary([rec("a", 0, 0.10), rec("a", 1, 0.12), rec("b", 0, 0.104), rec("b", 1, 0.104)],
                              required_seeds=[0, 1])
    assert summ["best"] == "a" and summ["best_mean_ndcg@10"] == pytest.approx(0.11) and summ["met"]
    assert not sequential.summary([rec("a", 0, 0.12)])["met"]  # one seed of the three is not a mean over 0-2
    summ = sequential.summary([rec("b", 0, 0.104), rec("b", 1, 0.1048)], required_seeds=[0, 1])
    assert not summ["met"]
    table = sequential.markdown(summ)
    assert table[2].startswith("| `b` | 0.1040 / 0.1048 | 0, 1 | 0.1044 |") and "not met" in table[-1]


def test_tuning_plans_are_valid_configs_and_the_sasrec_config_is_its_best_trial():
    """Every trial of `benchmarks.tune_sequential` is a config its model accepts, and the sasrec
    config file holds the recorded best trial's params (plus what its `chosen` note adds)."""
    from benchmarks import tune_sequential as ts

    from recstack.models.base import make_model
    from recstack.models.config import load_config_file

    for model, plan in ts.PLANS.items():
        for name in plan["trials"]:
            make_model(model, ts.trial_params(model, name))
    cf = load_config_file(ts.ROOT / "configs" / "sasrec.leave-last-out.json")
    trials = [t for t in ts.stored("sasrec")  # the search's own seed (other seeds: checks of the choice)
              if "/" not in t["trial"] and t["params"].get("seed") == cf.chosen["seed"]]
    best = max(trials, key=lambda t: t["valid_ndcg@10"])
    assert cf.chosen["value"] == best["valid_ndcg@10"] and cf.chosen["trials"] == len(trials)
    assert {k: v for k, v in best["params"].items() if k != "seed"}.items() <= cf.params.items()


def test_tuning_by_mean_over_seeds_keeps_trials_measured_on_every_seed():
    """With several seeds, a trial's value is its mean over them; one missing a seed is left out,
    and the best single-seed figure does not decide the choice."""
    from benchmarks import tune_sequential as ts

    def rec(trial, seed, value, epoch):
        return {"trial": trial, "params": {"dropout": 0.1, "seed": seed}, "valid_ndcg@10": value,
                "best_epoch": epoch, "fit_seconds": 3.0}

    trials = [rec("a", 0, 0.120, 5), rec("a", 1, 0.100, 6), rec("a", 2, 0.101, 7),
              rec("b", 0, 0.110, 4), rec("b", 1, 0.108, 4), rec("b", 2, 0.109, 5),
              rec("c", 0, 0.130, 2)]
    rows = ts.by_mean(trials, [0, 1, 2])
    assert [r["trial"] for r in rows] == ["a", "b"]
    a, b = rows
    assert a["values"] == [0.120, 0.100, 0.101] and a["valid_ndcg@10"] == pytest.approx(0.107)
    assert b["valid_ndcg@10"] == pytest.approx(0.109) and b["best_epoch"] == "4 / 4 / 5"
    assert b["params"] == {"dropout": 0.1} and b["fit_seconds"] == pytest.approx(3.0)
    assert max(rows, key=lambda r: r["valid_ndcg@10"])["trial"] == "b"
