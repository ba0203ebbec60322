"""Every metric in recstack.metrics on small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recstack import metrics as M

L2, L3, L5 = np.log2(3), np.log2(4), np.log2(5)  # discounts 1/log2(r + 1) at ranks 2, 3, 4

# user 0: 3 relevant, hits at ranks 2 and 4; user 1: 1 relevant, hit at rank 2, two empty slots;
# user 2: nothing relevant (left out of every mean); user 3: 2 relevant, no hit
RECOMMENDED = np.array([[1, 2, 3, 4], [5, 6, -1, -1], [7, 8, 9, 10], [11, 12, 13, 14]])
RELEVANT = [[2, 4, 9], [6], [], [1, 0]]


@pytest.fixture
def hits():
    return M.hit_matrix(RECOMMENDED, RELEVANT)


def test_hit_matrix(hits):
    h, n_rel = hits
    assert h.tolist() == [[False, True, False, True], [False, True, False, False],
                          [False] * 4, [False] * 4]
    assert n_rel.tolist() == [3, 1, 0, 2]
    csr = sp.csr_matrix(([1, 1, 1, 1, 1, 1], ([0, 0, 0, 1, 3, 3], [2, 4, 9, 6, 1, 0])), shape=(4, 20))
    h2, n2 = M.hit_matrix(RECOMMENDED, csr)
    assert np.array_equal(h2, h) and np.array_equal(n2, n_rel)


def test_hit_matrix_refuses_bad_shapes():
    with pytest.raises(ValueError, match="2-d"):
        M.hit_matrix(np.array([1, 2]), [[1]])
    with pytest.raises(ValueError, match="2 recommended rows but 1 relevant"):
        M.hit_matrix(np.array([[1], [2]]), [[1]])


def test_precision_counts_empty_slots_as_misses(hits):
    assert M.precision_at_k(*hits) == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert M.precision_at_k(*hits, k=2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)


def test_recall_divides_by_all_relevant(hits):
    assert M.recall_at_k(*hits) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert M.recall_at_k(*hits, k=1) == 0.0


def test_ndcg_ideal_over_min_k_and_relevant(hits):
    u0 = (1 / L2 + 1 / L5) / (1 + 1 / L2 + 1 / L3)  # 3 relevant < K = 4: ideal has 3 hits
    u1 = (1 / L2) / 1.0
    assert M.ndcg_at_k(*hits) == pytest.approx((u0 + u1 + 0) / 3)
    # K = 2: user 0's ideal is 2 hits (min(K, #relevant)), only the rank-2 hit counts
    assert M.ndcg_at_k(*hits, k=2) == pytest.approx(((1 / L2) / (1 + 1 / L2) + 1 / L2 + 0) / 3)


def test_map_msr_and_map_at_k(hits):
    # user 0: precision 1/2 at rank 2 and 2/4 at rank 4 → sum 1.0; user 1: 1/2 at rank 2
    assert M.map_msr(*hits) == pytest.approx((1.0 / 3 + 0.5 / 1 + 0) / 3)
    assert M.map_at_k(*hits) == pytest.approx((1.0 / 3 + 0.5 / 1 + 0) / 3)  # min(4, 3) = 3
    # K = 2: only the rank-2 hit; MSR divides by #relevant (3), MAP@K by min(K, #relevant) (2)
    assert M.map_msr(*hits, k=2) == pytest.approx((0.5 / 3 + 0.5 + 0) / 3)
    assert M.map_at_k(*hits, k=2) == pytest.approx((0.5 / 2 + 0.5 + 0) / 3)


def test_hr_and_mrr(hits):
    assert M.hr_at_k(*hits) == pytest.approx(2 / 3)
    assert M.mrr_at_k(*hits) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert M.hr_at_k(*hits, k=1) == 0.0 and M.mrr_at_k(*hits, k=1) == 0.0
    h, n = M.hit_matrix(np.array([[3, 1, 2]]), [[2, 3]])
    assert M.mrr_at_k(h, n) == 1.0


def test_ranking_metrics_keys_and_no_relevant_users():
    h, n = M.hit_matrix(RECOMMENDED, RELEVANT)
    out = M.ranking_metrics(h, n, 4)
    assert list(out) == ["precision@4", "recall@4", "ndcg@4", "map", "map@4", "hr@4", "mrr@4"]
    assert out["hr@4"] == pytest.approx(2 / 3)
    h0, n0 = M.hit_matrix(np.array([[1, 2]]), [[]])
    assert all(v == 0.0 for v in M.ranking_metrics(h0, n0, 2).values())


def test_perfect_list_scores_one():
    h, n = M.hit_matrix(np.array([[4, 7, 1]]), [[7, 4]])
    assert M.ndcg_at_k(h, n) == 1.0 and M.map_msr(h, n) == 1.0 and M.recall_at_k(h, n) == 1.0
    assert M.precision_at_k(h, n) == pytest.approx(2 / 3)


def test_coverage():
    assert M.coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert M.coverage(np.array([[-1]]), 4) == 0.0 and M.coverage(np.array([[0]]), 0) == 0.0


def test_novelty():
    pop = np.array([4, 2, 1, 0])  # users who interacted with each item, of 4 users
    # items 0, 1, 3: -log2(4/4) = 0, -log2(2/4) = 1, unseen item counts once: -log2(1/4) = 2
    assert M.novelty(np.array([[0, 1], [3, -1]]), pop, 4) == pytest.approx(1.0)
    assert M.novelty(np.array([[-1, -1]]), pop, 4) == 0.0


def test_diversity():
    vec = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    # [0, 1]: cosine 0 → distance 1; [0, 2]: cosine 1/√2; [3, -1]: one item, skipped
    assert M.diversity(np.array([[0, 1], [0, 2], [3, -1]]), vec) == pytest.approx((1 + 1 - 2 ** -0.5) / 2)
    # three items: pairwise cosines 0, 1/√2, 1/√2 → mean distance 1 - √2/3
    assert M.diversity(np.array([[0, 1, 2]]), sp.csr_matrix(vec)) == pytest.approx(1 - np.sqrt(2) / 3)
    assert M.diversity(np.array([[0, -1]]), vec) == 0.0


def test_rmse_and_mae():
    y, p = np.array([1, 2, 3, 4]), np.array([2, 2, 5, 4])
    assert M.rmse(y, p) == pytest.approx(np.sqrt(5 / 4))
    assert M.mae(y, p) == pytest.approx(0.75)
    assert M.rmse(y, y) == 0.0
