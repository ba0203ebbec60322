"""A/B experiments without the HTTP service: the CLI life cycle on a SQLite store, variant strings,
the serving hook (sticky arms, re-ranked variants, forced users, exposures) and the report's policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recstack.ab import experiments as E
from recstack.ab.commands import parse_variant
from recstack.ab.report import build_report, compare
from recstack.ab.serving import Experiments, ExposureLog, serve_list
from recstack.ab.simulate import simulation_state
from recstack.cli import main
from recstack.errors import ConfigError
from recstack.serve.store import open_store


def test_variant_strings():
    assert parse_variant("control:share=0.5") == {"name": "control", "share": 0.5}
    assert parse_variant("b:share=0.25,model=3,diversity=0.3,novelty=0.1,exclude=Horror|War") == {
        "name": "b", "share": 0.25, "model_version": 3,
        "rerank": {"diversity": 0.3, "novelty": 0.1, "exclude_genres": ["Horror", "War"]}}
    for bad, word in (("nocolon", "expected"), ("b:model=2", "share"), ("b:share=x", "not a number"),
                      ("b:share=0.5,colour=red", "unknown key")):
        with pytest.raises(ConfigError, match=word):
            parse_variant(bad)


def test_cli_life_cycle(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'e.db'}"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["ab", *argv, "--db", db])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("create", "--name", "home", "--variant", "control:share=0.5",
                       "--variant", "novel:share=0.5,novelty=0.4", "--planned-users", "50", "--json")
    assert code == 0 and json.loads(out)["status"] == "draft"
    assert run("create", "--name", "home", "--variant", "a:share=0.5", "--variant", "b:share=0.5",
               "--planned-users", "5")[2].startswith("error: an experiment named 'home' exists")
    assert run("create", "--name", "x", "--variant", "a:share=0.5", "--planned-users", "5")[0] == 2
    assert run("start", "home")[0] == 0
    code, out, _ = run("list", "--json")
    assert [(e["name"], e["status"]) for e in json.loads(out)["experiments"]] == [("home", "running")]
    assert run("force", "home", "--user", "qa", "--variant", "nope")[0] == 2
    code, out, _ = run("force", "home", "--user", "qa", "--variant", "novel", "--json")
    assert json.loads(out)["forced"] == {"qa": "novel"}
    plot = tmp_path / "lift.png"
    code, out, _ = run("report", "home", "--plot", str(plot))
    assert code == 0 and "not yet: 0 of planned 50" in out and plot.read_bytes()[:4] == b"\x89PNG"
    assert run("stop", "home")[0] == 0 and run("stop", "home")[0] == 2
    assert run("report", "nothing")[2].startswith("error: no experiment 'nothing'")


def test_serving_hook_is_sticky_reranks_and_logs(tmp_path):
    state = simulation_state(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        exp = E.create(store, {"name": "hook", "planned_users": 10, "salt": "hook",
                               "variants": [{"name": "A", "share": 0.5},
                                            {"name": "B", "share": 0.5, "rerank": {"novelty": 5.0}}]})
        E.start(store, exp.id)
        E.force(store, exp.id, "qa", "B")
        live = Experiments(store, ExposureLog(store, background=False))
        users = [f"u{i}" for i in range(40)]
        arms = {u: live.arm(u) for u in users}
        assert all(live.arm(u).variant == arms[u].variant for u in users)  # sticky
        lists = {}
        for u in users + ["qa"]:
            arm = live.arm(u)
            lists[u] = serve_list(state, u, 10, arm)
            live.expose(arm, u, lists[u])
        a = [u for u in users if arms[u].variant.name == "A"]
        b = [u for u in users if arms[u].variant.name == "B"]
        assert a and b
        pop = state.rec.train.item_popularity
        index = state.rec.train.item_index
        mean_pop = {v: np.mean([pop[index[i]] for u in us for i in lists[u].ids]) for v, us in (("A", a), ("B", b))}
        assert mean_pop["B"] < mean_pop["A"]  # the novelty variant shows less popular items
        assert lists["qa"].to_dict()["variant"] == "B"
        assert live.exposures.flush() == len(users)  # the forced QA user is not logged
        report = build_report(store, exp.id)
        assert [v["users"] for v in report["variants"]] == [len(a), len(b)]
    finally:
        store.close()


def test_compare_uses_welch_for_means_and_agrees_with_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.5, 1.0, 400), rng.normal(3.9, 1.0, 400)
    c = compare(a, b, binary=False)
    assert c["test"] == "Welch t" and c["p_value"] < 1e-6
    assert c["ci"][0] < c["value"] < c["ci"][1]
    assert abs(c["bootstrap_ci"][0] - c["ci"][0]) < 0.02 and abs(c["bootstrap_ci"][1] - c["ci"][1]) < 0.02


def test_spec_validation_errors_reach_the_user():
    with pytest.raises(ConfigError, match="name"):
        E.parse_spec({"name": "42", "variants": [], "planned_users": 1})
    with pytest.raises(ConfigError, match="model_version"):
        E.parse_spec({"name": "a", "planned_users": 1,
                      "variants": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.5, "model_version": 0}]})


def test_a_verdict_after_the_planned_size_even_when_a_variant_has_no_successes(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        exp = E.create(store, {"name": "zero", "planned_users": 30, "salt": "z",
                               "variants": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.5}]})
        log = ExposureLog(store, background=False)
        for n in range(30):
            log.add(exp.id, "A", f"a{n}", ["1"], [1], at=1e9)
            log.add(exp.id, "B", f"b{n}", ["1"], [1], at=1e9)
        log.flush()
        for n in range(20):  # 20 of 30 click in A, none in B
            store.add_events(f"a{n}", [{"event_id": "c", "item": "1", "type": "click", "timestamp": int(1e9) + 5}])
        report = build_report(store, "zero")
        assert report["decision"] == "significant" and report["verdict"].startswith("B is worse than A: lift -100.0%")
        assert report["variants"][1]["mean"] == 0.0 and json.dumps(report, allow_nan=False)
        with pytest.raises(Exception, match="no experiment"):
            E.get(store, "9" * 40)
    finally:
        store.close()
