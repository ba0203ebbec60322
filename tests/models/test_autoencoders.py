"""`cdae`, `multvae`, `multdae`: conformance, known answers, the VAE's KL schedule, a quality floor."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recstack.evaluate import topn_metrics  # noqa: E402
from recstack.models.autoencoders import MultDAE, MultVAE  # noqa: E402
from tests.models.conformance import ModelConformance  # noqa: E402

pytestmark = pytest.mark.deep

TINY = {"epochs": 30, "batch_size": 16, "learning_rate": 0.01, "early_stopping": False,
        "min_rating": 3.0, "threads": 1}


class TestCDAE(ModelConformance):
    model_name = "cdae"
    params = {**TINY, "factors": 16, "corruption": 0.2}


class TestMultVAE(ModelConformance):
    model_name = "multvae"
    params = {**TINY, "hidden": 0, "factors": 16, "dropout": 0.2, "total_anneal_steps": 50}


class TestMultDAE(ModelConformance):
    model_name = "multdae"
    params = {**TINY, "hidden": 32, "factors": 16, "dropout": 0.2}


def test_vae_scores_without_sampling_and_kl_schedule(blocks):
    """Eval-mode scores use the posterior mean (repeatable); β follows min(cap, step/total)."""
    m = MultVAE({**TestMultVAE.params, "epochs": 3, "anneal_cap": 1.0}).fit(blocks)
    np.testing.assert_array_equal(m.score(np.arange(10)), m.score(np.arange(10)))
    rows = m.history_rows(torch.arange(8))
    users = torch.arange(8)
    m.network_.eval()  # no dropout, no sampling: the loss is a function of step alone
    losses = {}
    for step in (0, 25, 50, 500):
        m.step = step
        with torch.no_grad():
            losses[step] = float(m.batch_loss((users, rows)))
    nll = losses[0]
    kl_half = losses[25] - nll
    assert kl_half > 0
    assert losses[50] - nll == pytest.approx(2 * kl_half, rel=1e-4)
    assert losses[500] - nll == pytest.approx(2 * kl_half, rel=1e-4)  # capped at anneal_cap


def test_dae_reconstructs_a_users_block(blocks):
    """A user known only by a few in-block items gets the rest of their block on top."""
    m = MultDAE(TestMultDAE.params).fit(blocks)
    m.set_history(blocks.subset(np.isin(blocks.item, [0, 2, 4]) & (blocks.rating >= 3)))
    s = m.score(np.arange(blocks.n_users))
    seen = m.history_matrix().toarray() > 0
    s[seen] = -np.inf
    top = np.argsort(-s, axis=1)[:, :5]
    has = seen.any(1)
    assert has.sum() > 10
    assert (top[has] % 2 == 0).mean() >= 0.95  # even items = block 0, the only block anyone showed


@pytest.mark.slow
@pytest.mark.timeout(900)  # a real fit on ML-100K; the default is 300 s
def test_multvae_quality_floor_msr(ml100k_msr):
    """Mult-VAE on msr-75 (MSR's stratified 75/25 split of ML-100K): NDCG@10 > 0.40."""
    train, test = ml100k_msr
    m = MultVAE(hidden=0, factors=300, batch_size=64, anneal_cap=1.0, total_anneal_steps=1000,
                epochs=30, patience=5, threads=1).fit(train)
    metrics, _ = topn_metrics(m, train, test, 10, "train")
    assert metrics["ndcg@10"] > 0.40, metrics
