"""ANN retrieval: recall against exact inner-product search on factor-shaped vectors; filters."""

from __future__ import annotations

import numpy as np

from recstack.serve.index import ItemIndex, factor_like_vectors, mips_to_l2, recall_at_k


def test_mips_to_l2_preserves_the_order():
    x = factor_like_vectors(200, 8, seed=3)
    q = factor_like_vectors(1, 8, seed=4)[0]
    aug, top = mips_to_l2(x)
    assert np.allclose(np.einsum("nd,nd->n", aug, aug), top, rtol=1e-4)  # every item on one sphere
    d2 = ((aug - np.append(q, 0.0)) ** 2).sum(1)
    assert np.array_equal(np.argsort(d2, kind="stable")[:10], np.argsort(-(x @ q), kind="stable")[:10])


def test_recall_on_factor_like_vectors():
    x = factor_like_vectors(10_000, 32, seed=0)
    queries = factor_like_vectors(200, 32, seed=1)
    index = ItemIndex(x, ef_construction=200, ef_search=256)
    found = np.vstack([index.search(q, 10)[0] for q in queries])
    truth = np.vstack([index.exact(q, 10)[0] for q in queries])
    assert recall_at_k(found, truth) >= 0.97


def test_filters_always_give_k_valid_items():
    x = factor_like_vectors(5000, 16, seed=2)
    index = ItemIndex(x, ef_construction=100)
    rng = np.random.default_rng(0)
    for share in (0.9, 0.3, 0.04, 0.002):
        allowed = rng.random(len(x)) < share
        q = factor_like_vectors(1, 16, seed=int(share * 1000))[0]
        idx, scores = index.search(q, 10, allowed)
        want, _ = index.exact(q, 10, allowed)
        assert len(idx) == min(10, allowed.sum())
        assert allowed[idx].all() and len(set(idx.tolist())) == len(idx)
        assert np.all(np.diff(scores) <= 1e-6)
        assert len(set(idx.tolist()) & set(want.tolist())) >= 0.8 * len(want)
    none = np.zeros(len(x), bool)
    assert len(index.search(x[0], 10, none)[0]) == 0
