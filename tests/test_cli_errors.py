"""Errors a user meets at the command line: numeric options checked, `--out` never deletes or
overwrites what recstack did not write, `-v` anywhere, unexpected errors as one line (exit 1)."""

from __future__ import annotations

import json

import pytest

from recstack import cli
from tests.test_cli import one_json, refused, run


def main(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr); argparse exits count too."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "mf", "--protocol", "ml100k-folds", "--folds", "0"], "--folds: must be ≥ 1, got 0"),
    (["evaluate", "mf", "--protocol", "msr-75", "-k", "-3"], "-k: must be ≥ 1, got -3"),
    (["evaluate", "mf", "--protocol", "msr-75", "-k", "ten"], "-k: expected an integer, got 'ten'"),
    (["evaluate", "mf", "--protocol", "msr-75", "--seed", "-1"], "--seed: must be ≥ 0"),
    (["tune", "mf", "--protocol", "msr-75", "--trials", "0"], "--trials: must be ≥ 1, got 0"),
    (["tune", "mf", "--protocol", "msr-75", "--timeout", "-5"], "--timeout: must be a finite number > 0"),
    (["tune", "mf", "--protocol", "msr-75", "--timeout", "inf"], "--timeout: must be a finite number > 0"),
    (["recommend", "somewhere", "--user", "1", "-k", "0"], "-k: must be ≥ 1, got 0"),
    (["web", "somewhere", "--port", "70000"], "--port: must be in 1..65535, got 70000"),
])
def test_numeric_options_are_checked_before_any_work(capsys, argv, needle):
    code, out, err = main(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: recstack ") and needle in err, err


def test_verbose_after_the_subcommand(capsys):
    code, out, _ = main(capsys, "models", "-v")
    assert code == 0 and "biased-mf" in out
    code, _, err = main(capsys, "recommend", "/nonexistent/model", "--user", "1", "-v")
    assert code == 2 and "Traceback" in err and err.strip().endswith("no such model folder")


def test_unexpected_exception_is_one_line_and_traceback_on_v(capsys, monkeypatch):
    def broken(args):
        return {}["missing"] + 1  # a bug: KeyError

    monkeypatch.setattr(cli, "cmd_models", broken)
    code, out, err = main(capsys, "models")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("error: unexpected KeyError: 'missing'") and "run with -v for the traceback" in err
    for argv in (["-v", "models"], ["models", "-v"]):
        code, _, err = main(capsys, *argv)
        assert code == 1 and "Traceback (most recent call last)" in err and "KeyError: 'missing'" in err


def test_train_refuses_a_folder_of_user_files_before_fitting(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    refused(run("train", "popular", "--out", str(folder), ok=False), str(folder), "not a recstack model folder")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "keep me"
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "data.csv").write_text("1,2")
    refused(run("train", "biased-mf", "--out", str(tmp_path / "m"), "--export-seed", str(seed), ok=False),
            str(seed), "not an earlier seed export")
    assert not (tmp_path / "m").exists() and [p.name for p in seed.iterdir()] == ["data.csv"]


def test_train_replaces_its_own_model_folder(tmp_path, capsys):
    out = tmp_path / "m"
    for model in ("popular", "baseline"):
        code, stdout, _ = main(capsys, "train", model, "--out", str(out), "--json")
        assert code == 0 and one_json(stdout)["model"] == model
    assert json.loads((out / "model.json").read_text())["model"] == "baseline"


def test_evaluate_out_creates_parents_and_keeps_foreign_files(tmp_path, capsys):
    target = tmp_path / "results" / "2026" / "baseline.json"
    code, stdout, _ = main(capsys, "evaluate", "baseline", "--protocol", "ml100k-folds", "--folds", "1",
                           "--out", str(target), "--json")
    assert code == 0 and json.loads(target.read_text())["metrics"] == one_json(stdout)["metrics"]
    notes = tmp_path / "notes.json"
    notes.write_text('["mine"]')
    code, _, err = main(capsys, "evaluate", "baseline", "--protocol", "ml100k-folds", "--out", str(notes))
    assert code == 2 and "not a result record" in err and notes.read_text() == '["mine"]'
    code, _, err = main(capsys, "tune", "baseline", "--protocol", "ml100k-folds", "--out", str(tmp_path))
    assert code == 2 and "is a folder" in err


def test_implicit_file_with_a_rating_model_is_refused(tmp_path, capsys):
    pairs = tmp_path / "clicks.tsv"
    pairs.write_text("".join(f"u{u}\ti{i}\n" for u in range(5) for i in range(4)))
    code, _, err = main(capsys, "train", "biased-mf", "--train", str(pairs), "--out", str(tmp_path / "m"))
    assert code == 2 and "implicit feedback" in err and "predicts ratings" in err
    code, stdout, _ = main(capsys, "train", "popular", "--train", str(pairs), "--out", str(tmp_path / "m"),
                           "--json")
    assert code == 0 and one_json(stdout)["model"] == "popular"


def test_a_closed_pipe_ends_quietly():
    """`recstack models | head -1`: no traceback and no error line when the reader goes away."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "recstack", "models", "-v"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first and "Traceback" not in err and "error" not in err, err


@pytest.mark.parametrize("argv, needle", [
    (["web"], "give a saved model folder DIR, or --api URL"),
    (["web", "somewhere", "--api", "http://127.0.0.1:9"], "not both"),
    (["web", "--api", "localhost:8000"], "--api 'localhost:8000': give the service's base URL"),
    (["web", "--api", "http://127.0.0.1:9", "--api-key-file", "/nonexistent/key"], "--api-key-file /nonexistent/key"),
])
def test_web_over_the_service_checks_its_options(capsys, argv, needle):
    code, out, err = main(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: ") and needle in err, err
