"""benchmarks/scale.py: growth exponents, the table and the scaled ML-25M shape."""

from __future__ import annotations


def test_scale_exponents_and_table_from_records():
    from benchmarks.scale import exponents, shape, table

    records = {"lin": {str(n): {"fit_seconds": n / 1e5, "peak_mb": 1024.0} for n in (100_000, 1_000_000, 10_000_000)},
               "sq": {str(n): {"fit_seconds": (n / 1e5) ** 2} for n in (100_000, 1_000_000)},
               "ease": {"100000": {"skipped": "items² memory"}}}
    exps = exponents(records)
    assert abs(exps["lin"] - 1.0) < 1e-9 and abs(exps["sq"] - 2.0) < 1e-9 and "ease" not in exps
    text = table(records)
    assert "| lin | 1.00 s, 1.00 GB" in text and "items² memory" in text and "| 1.00 |" in text
    assert shape(25_000_095) == (162_541, 59_047)


def test_parity_table_marks_each_row_against_its_target():
    from benchmarks.scale import parity_table

    rows = [{"check": "als", "in_process": 0.47, "other": 0.465, "diff": 0.005, "target": 0.01, "met": True},
            {"check": "top-k", "same_users": 0.985, "users": 943, "target": 0.99, "met": False}]
    text = parity_table(rows)
    assert "| als | 0.4700 | 0.4650 | 0.0050 | ≤ 0.01 | yes |" in text
    assert "98.50% of 943 users identical | ≥ 99% | no |" in text


def test_memory_stages_of_our_side_and_their_table(tmp_path):
    """`--stages`: our side's stages in order, each with resident ≤ peak, peaks never falling."""
    from benchmarks.scale import job_stages_ours, stages_table

    from recstack.data.parquet import write_parquet
    from recstack.data.synthetic import synthetic_interactions

    write_parquet(synthetic_interactions(200, 100, 4000, seed=1), tmp_path / "d")
    ours = job_stages_ours(tmp_path / "d")
    assert [s["stage"] for s in ours] == ["start", "imports", "columns read, user-major CSR", "item-major CSR",
                                         "fit", "save"]
    assert all(now <= peak for now, peak in (s["mb"] for s in ours))
    peaks = [s["mb"][1] for s in ours]
    assert peaks == sorted(peaks)
    theirs = [{"stage": "start", "mb": (10.0, 10.0)}, {"stage": "fit", "mb": (50.0, 80.0)}]
    text = stages_table({"ratings": 4000, "als": {"stages": ours, "peak_mb": 300.0},
                         "implicit-als": {"stages": theirs, "peak_mb": 81.0}})
    assert "| fit | " in text and "| 50 / 80 |" in text and "| item-major CSR | " in text and " - |" in text
    assert text.splitlines()[-1].endswith("| 300 | 81 |")


def test_epoch_sample_trains_n_batches_and_counts_the_epoch(tmp_path):
    """The extrapolated epoch of a torch model: n batches trained, every batch of the epoch counted."""
    import math

    from benchmarks.scale import OURS, job_epoch_sample

    from recstack.data.parquet import write_parquet
    from recstack.data.synthetic import synthetic_interactions
    from recstack.models.base import make_model

    write_parquet(synthetic_interactions(300, 200, 12_000, seed=2), tmp_path / "d")
    rec = job_epoch_sample("lightgcn", tmp_path / "d", n_batches=2)
    batches = math.ceil(12_000 / make_model("lightgcn", OURS["lightgcn"][1]).config.batch_size)
    assert rec["batches_trained"] == 2 and rec["batches_per_epoch"] == batches > 2
    assert rec["fit_seconds"] >= rec["measured_seconds"] > 0
    assert f"from 2 of {batches} batches" in rec["extrapolated"]


def test_peak_estimate_extrapolates_the_two_largest_smaller_points():
    from benchmarks.scale import peak_estimate

    points = {"1000000": {"fit_seconds": 1.0, "peak_mb": 1024.0}, "10000000": {"fit_seconds": 9.0, "peak_mb": 4096.0},
              "100000": {"fit_seconds": 0.1, "peak_mb": 500.0}, "20000000": {"skipped": "x"}}
    est, text = peak_estimate(points, 19_000_000)
    assert abs(est - (4096 + 3072 * 9 / 9)) < 1e-9 and "≈ 7.0 GB at 1.9e+07" in text
    assert peak_estimate({"1000000": points["1000000"]}, 10**7) is None
