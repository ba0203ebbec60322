"""`ncf` (GMF, MLP, NeuMF): conformance per variant, batched scoring against the pairwise forward,
negative sampling, NeuMF pretraining from GMF and MLP."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recstack.models.ncf import NCF  # noqa: E402
from tests.models.conformance import ModelConformance  # noqa: E402

pytestmark = pytest.mark.deep

TINY = {"epochs": 15, "batch_size": 128, "learning_rate": 0.01, "early_stopping": False,
        "min_rating": 3.0, "factors": 8, "mlp_layers": 2, "threads": 1}


class TestNeuMF(ModelConformance):
    model_name = "ncf"
    params = {**TINY, "variant": "neumf"}


class TestGMF(ModelConformance):
    model_name = "ncf"
    params = {**TINY, "variant": "gmf"}


class TestMLP(ModelConformance):
    model_name = "ncf"
    params = {**TINY, "variant": "mlp"}


@pytest.mark.parametrize("variant", ["gmf", "mlp", "neumf"])
def test_batched_scoring_matches_pairwise_forward(blocks, variant):
    """score_all's split first layer and GMF product equal the network's (user, item) forward."""
    m = NCF({**TINY, "variant": variant, "epochs": 2, "mlp_layers": 3}).fit(blocks)
    users = torch.arange(7)
    with torch.no_grad():
        batched = m.network_.score_all(users)
        uu, ii = torch.meshgrid(users, torch.arange(blocks.n_items), indexing="ij")
        pairwise = m.network_(uu.reshape(-1), ii.reshape(-1)).reshape(7, -1)
    np.testing.assert_allclose(batched.numpy(), pairwise.numpy(), rtol=1e-5, atol=1e-5)


def test_negatives_are_never_positives(blocks):
    m = NCF({**TINY, "min_rating": 0.0})
    m.n_users_, m.n_items_ = blocks.n_users, blocks.n_items
    m.setup(blocks)
    users = torch.from_numpy(np.repeat(np.arange(blocks.n_users), 50))
    items = m.sample_negatives(users, torch.Generator().manual_seed(0))
    seen = blocks.csr.toarray() > 0
    assert not seen[users.numpy(), items.numpy()].any()
    # and they cover the unseen items (uniform draw, not a fixed subset)
    assert len(np.unique(items.numpy())) == int((~seen).any(0).sum())


def test_neumf_starts_from_pretrained_gmf_and_mlp(blocks):
    """NeuMF's initial logits are α·GMF + (1-α)·MLP of separately trained GMF and MLP models."""
    cfg = {**TINY, "epochs": 4, "alpha": 0.3}
    gmf = NCF({**cfg, "variant": "gmf"}).fit(blocks)
    mlp = NCF({**cfg, "variant": "mlp"}).fit(blocks)
    m = NCF({**cfg, "variant": "neumf", "pretrain": True})
    m.n_users_, m.n_items_ = blocks.n_users, blocks.n_items
    m.setup(blocks.subset(blocks.rating >= 3.0))
    torch.manual_seed(0)
    m.network_ = m.build_network()
    m.init_network(blocks.subset(blocks.rating >= 3.0), None)
    users = np.arange(blocks.n_users)
    expected = 0.3 * gmf.score(users) + 0.7 * mlp.score(users)
    np.testing.assert_allclose(m._score(users, None), expected, rtol=1e-5, atol=1e-5)
    # and training NeuMF from there keeps the known answer (conformance checks the rest)
    fitted = NCF({**cfg, "variant": "neumf", "pretrain": True}).fit(blocks)
    assert not np.allclose(fitted.score(users), expected, atol=1e-3)  # fine-tuning moved on from the blend
