"""Proof by simulation with small numbers: A/A false positives within a binomial band, power with a
big lift, the SRM check catching a serving skew; the CLI record (the full numbers: benchmarks/ab.py)."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from recstack.ab.simulate import simulate
from recstack.cli import main
from recstack.errors import ConfigError


def test_aa_false_positive_rate_is_within_a_binomial_band():
    runs = 200
    r = simulate(400, 0.0, 0.10, runs, seed=7)
    lo, hi = stats.binom.ppf([0.0005, 0.9995], runs, 0.05)  # 99.9% band around α = 0.05
    assert lo <= r["rejections"] <= hi, r
    assert r["runs"] == runs and r["users_per_variant"] == 200
    assert abs(r["observed_users_per_variant"][0] - 200) < 10  # hashing splits 50/50
    assert r["srm_flag_rate"] <= 0.02


def test_a_big_lift_is_detected_and_the_same_seed_repeats():
    r = simulate(1000, 1.0, 0.10, 12, seed=3)  # 10% vs 20% at 500 per variant: power ≈ 0.99
    assert r["rejection_rate"] >= 0.9, r
    again = simulate(1000, 1.0, 0.10, 12, seed=3)
    assert {**again, "seconds": 0, "cpu_seconds": 0} == {**r, "seconds": 0, "cpu_seconds": 0}


def test_srm_flags_a_skewed_serving_path():
    skewed = simulate(20_000, 0.0, 0.10, 1, seed=5, serve_skew=0.55)
    assert skewed["srm_flag_rate"] == 1.0
    assert skewed["observed_users_per_variant"][0] > 10_700
    even = simulate(20_000, 0.0, 0.10, 1, seed=5)
    assert even["srm_flag_rate"] == 0.0


def test_simulate_cli_json_and_bad_input(capsys):
    assert main(["ab", "simulate", "--users", "200", "--runs", "3", "--seed", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"rejection_rate", "runs", "users_per_variant"} <= set(record)
    assert record["runs"] == 3 and record["users_per_variant"] == 100
    assert main(["ab", "simulate", "--users", "200", "--base-rate", "0.8", "--lift", "0.5"]) == 2
    assert "click rates" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="serve-skew"):
        simulate(100, 0.0, 0.1, 1, serve_skew=0.3)
