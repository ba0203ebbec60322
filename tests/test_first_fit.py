"""The bench's first-fit measurement: a new process, its first fit and its second, reported
beside the steady-state time in the speed table."""

from __future__ import annotations

from benchmarks import report, speed


def test_fresh_process_reports_first_and_later_fits():
    got = speed.fresh_fit_times("baseline", {"epochs": 3}, "ml100k-folds", fits=2)
    assert "error" not in got, got
    assert got["first_fit_seconds"] > 0 and len(got["later_fit_seconds"]) == 1
    assert got["first_fit_cpu_seconds"] > 0 and got["setup_seconds"] > 0


def test_fresh_process_error_is_reported_not_raised():
    got = speed.fresh_fit_times("no-such-model", {}, "ml100k-folds")
    assert "unknown model 'no-such-model'" in got["error"]


def test_speed_table_shows_first_fit_beside_steady_state(tmp_path):
    side = {"fit_seconds": 0.25, "fit_predict_seconds": 0.3, "metric": 0.93, "repeats": 1,
            "first_fit": {"first_fit_seconds": 0.81, "later_fit_seconds": [0.26]}}
    ref = {"fit_seconds": 2.5, "fit_predict_seconds": 2.9, "metric": 0.934, "repeats": 1,
           "first_fit": {"error": "timed out after 5 s"}}
    row = {"name": "pair", "fold": "u1", "recstack": side, "reference_side": ref, "fit_ratio": 0.1,
           "fit_predict_ratio": 0.103, "fit_cpu_ratio": 0.1, "metric": "rmse", "target_text": "t", "met": True}
    lines = report._speed_table([row])
    assert any("first fit s, new process" in line for line in lines)
    assert "| 0.250 | 2.500 | 0.810 (0.260) / *timed out after 5 s* |" in lines[-2]
