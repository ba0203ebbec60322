"""The shared torch trainer: holdout split, early stopping restores the best epoch, devices,
threads, array persistence, and the clear error when torch is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recstack.data.synthetic import block_data


def test_torch_missing_gives_a_clear_error():
    """With torch unimportable, the deep models name the [deep] extra; nothing else imports torch."""
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        import recstack.cli, recstack.evaluate, recstack.persist, recstack.recommend  # noqa: F401
        from recstack.errors import MissingExtraError
        from recstack.models.base import get_model_class
        for name in ("ncf", "cdae", "multvae", "multdae"):
            try:
                get_model_class(name)
            except MissingExtraError as exc:
                print(name, exc)
            else:
                print(name, "imported")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert "needs the optional extra [deep]" in line and "pip install" in line, line


def test_nothing_imports_torch_at_import_time():
    code = ("import sys, recstack, recstack.cli, recstack.evaluate, recstack.persist, "
            "recstack.models.base; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


torch = pytest.importorskip("torch")

from recstack.errors import ConfigError  # noqa: E402
from recstack.models.autoencoders import MultDAE  # noqa: E402
from recstack.models.torch_base import per_user_holdout, ranking_ndcg, resolve_device  # noqa: E402
from recstack.persist import save_model  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return block_data(n_users=80, n_items=50, n_blocks=2, density=0.4, seed=3)


def test_numba_parallel_code_inside_a_fit_keeps_torchs_thread_count():
    """numba's OpenMP pool, started by the first parallel kernel of a process, sets the shared
    OpenMP thread count to numba's; `torch_settings` starts it first, so a `threads: 1` fit stays
    on one thread after its first validation (a fresh process: the pool starts once)."""
    code = textwrap.dedent("""
        import numpy as np, torch
        from recstack.models.torch_base import torch_settings
        from recstack.topk import top_k_rows
        with torch_settings(1):
            top_k_rows(np.random.default_rng(0).random((64, 5000)).astype(np.float32), 10)
            print(torch.get_num_threads())
    """)
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_per_user_holdout(data):
    tr, va = per_user_holdout(data, 0.25, seed=5)
    assert len(tr) + len(va) == len(data)
    counts = np.bincount(data.user, minlength=data.n_users)
    n_va = np.bincount(va.user, minlength=data.n_users)
    expected = np.minimum(np.round(0.25 * counts), np.maximum(counts - 1, 0))
    np.testing.assert_array_equal(n_va, expected)
    assert (np.bincount(tr.user, minlength=data.n_users)[counts > 0] >= 1).all()
    both = tr.csr.multiply(va.csr)
    assert both.nnz == 0  # disjoint
    again, _ = per_user_holdout(data, 0.25, seed=5)
    np.testing.assert_array_equal(again.item, tr.item)
    other, _ = per_user_holdout(data, 0.25, seed=6)
    assert not np.array_equal(other.item, tr.item)


def _tiny(**kw):
    params = {"hidden": 0, "factors": 8, "dropout": 0.2, "batch_size": 16, "learning_rate": 0.003,
              "min_rating": 3.0, "threads": 1, "epochs": 12}
    return MultDAE({**params, **kw})


def test_early_stopping_restores_the_best_epoch(data):
    tr, va = per_user_holdout(data, 0.3, seed=0)
    m = _tiny(patience=2).fit(tr, va)
    hist = m.valid_ndcg_history_
    assert len(hist) == m.epochs_ and len(m.loss_history_) == m.epochs_
    assert m.best_epoch_ == int(np.argmax(hist)) + 1
    assert m.epochs_ == 12 or m.epochs_ - m.best_epoch_ == 2
    # the restored weights are the best epoch's: re-measuring gives that epoch's NDCG@10
    positives = va.subset(va.rating >= 3.0)
    assert ranking_ndcg(m, tr.subset(tr.rating >= 3.0), positives) == pytest.approx(hist.max(), abs=1e-12)


def test_carved_validation_and_refit(data):
    m = _tiny(epochs=6, patience=6, refit=False).fit(data)
    assert len(m.valid_ndcg_history_) == 6  # validation carved from the training part
    r = _tiny(epochs=6, patience=6, refit=True).fit(data)
    assert r.epochs_ == m.best_epoch_ and r.best_epoch_ == m.best_epoch_
    np.testing.assert_array_equal(r.valid_ndcg_history_, m.valid_ndcg_history_)
    # the model scores from the whole training part after fitting
    assert r.history_matrix().nnz == int((data.rating >= 3.0).sum())
    no_valid = _tiny(epochs=3, early_stopping=False).fit(data)
    assert len(no_valid.valid_ndcg_history_) == 0  # no early stopping: nothing carved, nothing watched


def test_seed_changes_numbers(data):
    a = _tiny(epochs=3, early_stopping=False, seed=1).fit(data).score([0, 1])
    b = _tiny(epochs=3, early_stopping=False, seed=2).fit(data).score([0, 1])
    assert not np.array_equal(a, b)


def test_threads_restored_and_devices(data):
    before = torch.get_num_threads()
    _tiny(epochs=1, early_stopping=False, threads=1).fit(data)
    assert torch.get_num_threads() == before
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            _tiny(device="cuda").fit(data)
    with pytest.raises(ConfigError, match="device"):
        _tiny(device="tpu")


def test_network_saved_as_plain_arrays(data, tmp_path):
    m = _tiny(epochs=2, early_stopping=False).fit(data)
    save_model(tmp_path / "m", m, data)
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as z:
        names = set(z.files)
        assert {"history_indptr_", "history_indices_"} <= names
        weights = {k: z[k] for k in names if k.startswith("network.")}
    assert set(weights) == {"network." + k for k in m.network_.state_dict()}
    for k, v in m.network_.state_dict().items():
        np.testing.assert_array_equal(weights["network." + k], v.numpy())

