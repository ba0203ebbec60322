"""`python -m recstack ...` end to end in subprocesses: JSON on stdout, errors as one line + exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

TINY = ["-p", "epochs=3", "-p", "factors=8"]
RECORD_KEYS = {"protocol", "model", "config", "data", "seed", "metrics", "metrics_sd", "folds",
               "fit_seconds", "predict_seconds", "peak_memory_mb"}


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "recstack", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_json(stdout: str) -> dict:
    """stdout must be exactly one JSON object (nothing else)."""
    obj = json.loads(stdout)
    assert isinstance(obj, dict) and stdout.strip().count("\n") == 0
    return obj


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out, seed = root / "model", root / "seed"
    proc = run("train", "biased-mf", *TINY, "-p", "early_stopping=false", "--out", str(out),
               "--export-seed", str(seed), "--json")
    return out, seed, one_json(proc.stdout)


def test_data_fetch_prints_one_json_object():
    info = one_json(run("data", "fetch", "ml-100k", "--json").stdout)
    assert (info["name"], info["n"], info["n_users"], info["n_items"]) == ("ml-100k", 100_000, 943, 1682)
    assert len(info["sha256"]) == 64 and os.path.isdir(info["path"])


def test_train_writes_model_and_seed_layout(trained):
    out, seed, record = trained
    assert record["model"] == "biased-mf" and record["config"]["factors"] == 8 and record["epochs"] == 3
    assert record["out"] == str(out) and (out / "model.json").exists()
    users = np.load(seed / "user_embeddings.npy", allow_pickle=False)
    items = np.load(seed / "item_embeddings.npy", allow_pickle=False)
    assert users.shape == (943, 8) and items.shape == (1682, 8)
    umap = json.loads((seed / "user_id_map.json").read_text())
    imap = json.loads((seed / "item_id_map.json").read_text())
    assert len(umap) == 943 and umap["1"] == 0 and len(imap) == 1682 and imap["50"] == 49


def test_recommend_prints_k_rows_with_titles(trained):
    out = run("recommend", str(trained[0]), "--user", "196", "-k", "10").stdout.splitlines()
    assert len(out) == 10
    assert out[0].lstrip().startswith("1. ") and out[9].lstrip().startswith("10. ")
    assert all(" (19" in line for line in out)  # "Title (year)" labels
    as_json = one_json(run("recommend", str(trained[0]), "--user", "196", "--json").stdout)
    assert [row["label"] for row in as_json["items"]][0] in out[0]
    assert as_json["score_kind"] == "rating" and as_json["fallback"] is None
    assert f"{as_json['items'][0]['score']:.2f}" in out[0]  # the number shown is the clipped estimate
    assert all(1 <= row["score"] <= 5 for row in as_json["items"])


def test_recommend_unknown_user_and_popular_fallback(trained):
    refused(run("recommend", str(trained[0]), "--user", "no-such-user", ok=False),
            "unknown user id 'no-such-user'", "--fallback popular")
    proc = run("recommend", str(trained[0]), "--user", "no-such-user", "-k", "3", "--fallback", "popular")
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and "Star Wars (1977)" in lines[0]
    assert "unknown to this model" in proc.stderr


def test_recommend_from_a_folder_that_is_no_model(tmp_path):
    refused(run("recommend", str(tmp_path), "--user", "1", ok=False), "model.json", "missing file")


def test_evaluate_ml100k_folds_json_record():
    rec = one_json(run("evaluate", "biased-mf", "--protocol", "ml100k-folds", "--folds", "1", "--json",
                       "-p", "epochs=5", "-p", "factors=8").stdout)
    assert RECORD_KEYS <= set(rec)
    assert rec["protocol"] == "ml100k-folds" and rec["model"] == "biased-mf"
    assert rec["config"]["epochs"] == 5 and rec["data"]["name"] == "ml-100k" and len(rec["data"]["sha256"]) == 64
    assert [f["name"] for f in rec["folds"]] == ["u1"] and rec["metrics_sd"] == {}
    assert 0.85 < rec["metrics"]["rmse"] < 1.05 and 0.65 < rec["metrics"]["mae"] < 0.85
    assert set(rec["folds"][0]) >= {"name", "metrics", "fit_seconds", "predict_seconds"}


@pytest.fixture
def custom_files(tmp_path):
    rng = np.random.default_rng(0)
    users, items = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    users, items = users.ravel(), items.ravel()
    ratings = np.where((users % 2) == (items % 2), 5, 1)  # two taste groups
    test = rng.random(len(users)) < 0.2
    train_file, test_file = tmp_path / "a.tsv", tmp_path / "b.csv"
    train_file.write_text("user\titem\trating\ttimestamp\n" + "".join(
        f"u{u}\tm{i}\t{r}\t{k}\n" for k, (u, i, r) in enumerate(zip(users[~test], items[~test], ratings[~test]))))
    test_file.write_text("".join(f"u{u},m{i},{r}\n" for u, i, r in zip(users[test], items[test], ratings[test])))
    return train_file, test_file


def test_evaluate_custom_rating_task(custom_files):
    train_file, test_file = custom_files
    rec = one_json(run("evaluate", "biased-mf", "--protocol", "custom", "--train", str(train_file),
                       "--test", str(test_file), "--task", "rating", "--json", "-p", "epochs=40",
                       "-p", "factors=4", "-p", "early_stopping=false", "-p", "learning_rate=0.05").stdout)
    assert rec["protocol"] == "custom" and rec["data"]["name"] == "a"
    assert rec["metrics"]["rmse"] < 1.0  # the global mean alone gives 2.0 on this two-group data


def test_evaluate_custom_bad_file_names_file_and_line(custom_files, tmp_path):
    train_file, _ = custom_files
    bad = tmp_path / "bad.tsv"
    bad.write_text("u1\tm1\t4\nu1\tm2\tfour\n")
    refused(run("evaluate", "biased-mf", "--protocol", "custom", "--train", str(train_file), "--test", str(bad),
                "--task", "rating", *TINY, ok=False),
            f"{bad}, line 2", "rating 'four' is not a finite number")
    refused(run("train", "mf", "--train", str(bad), "--out", str(tmp_path / "m"), *TINY, ok=False),
            f"{bad}, line 2")
    refused(run("evaluate", "mf", "--protocol", "custom", "--train", str(train_file), ok=False),
            "needs --train FILE and --test FILE")


def test_unknown_model_and_parameter_list_the_known_names():
    refused(run("evaluate", "no-such-model", "--protocol", "ml100k-folds", ok=False),
            "unknown model 'no-such-model'", "biased-mf", "mf")
    refused(run("train", "biased-mf", "-p", "speed=11", "--out", "/nonexistent/x", ok=False),
            "unknown parameter(s) speed", "known: factors, epochs, learning_rate")


def test_data_fetch_refuses_a_zip_with_the_wrong_checksum(tmp_path, monkeypatch):
    import zipfile

    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::10::5::1\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECSTACK_DATA", str(cache))
    refused(run("data", "fetch", "ml-1m", "--path", str(z), "--json", ok=False),
            str(z), "md5 checksum mismatch: expected c4d9eecfca2ab87c1945afe126590906")
    assert not cache.exists() or not any(cache.iterdir())
    refused(run("data", "fetch", "ml-7m", ok=False), "unknown data set 'ml-7m'", "ml-25m")


def test_models_lists_hyperparameters_and_abilities():
    listing = one_json(run("models", "--json").stdout)["models"]
    by_name = {m["name"]: m for m in listing}
    assert {"mf", "biased-mf", "ease", "als"} <= set(by_name)
    mf = by_name["mf"]
    assert "rating prediction" in mf["ability_text"] and "fold-in of new users" in mf["ability_text"]
    assert {p["name"]: p["type"] for p in mf["params"]}["factors"] == "int"
    assert "predicts_ratings" not in by_name["ease"]["abilities"]
    text = run("models").stdout
    assert "abilities:" in text and "factors: int = 100" in text


def test_recommend_reranks_for_diversity_and_excludes_genres(trained):
    plain = one_json(run("recommend", str(trained[0]), "--user", "196", "-k", "10", "--json").stdout)
    diverse = one_json(run("recommend", str(trained[0]), "--user", "196", "-k", "10", "--json",
                           "--diversity", "0.8", "--exclude-genre", "Drama").stdout)
    assert [r["item"] for r in plain["items"]] != [r["item"] for r in diverse["items"]]
    assert len(diverse["items"]) == 10 and not any("Drama" in r["genres"] for r in diverse["items"])
    refused(run("recommend", str(trained[0]), "--user", "196", "--diversity", "2", ok=False), "diversity=2.0")


def test_ab_plan_gives_users_per_variant():
    rec = one_json(run("ab", "plan", "--base-rate", "0.1", "--lift", "0.2", "--json").stdout)
    assert rec["users_per_variant"] == 3841 and isinstance(rec["users_per_variant"], int)
    refused(run("ab", "plan", "--base-rate", "1.5", "--lift", "0.2", ok=False), "base rate 1.5")


def test_recommend_explain_names_rated_movies(trained):
    out = one_json(run("recommend", str(trained[0]), "--user", "196", "-k", "3", "--json", "--explain").stdout)
    for row in out["items"]:
        e = row["explanation"]
        assert e["item"]["item"] == row["item"] and e["parts"]
    text = run("recommend", str(trained[0]), "--user", "196", "-k", "3", "--explain").stdout
    assert text.count("because you rated") + text.count("no single rated movie") == 3
