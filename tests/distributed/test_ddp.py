"""Data-parallel training of torch models: batch sharding, and 2 processes ≈ 1 process."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from recstack.data.synthetic import synthetic_interactions  # noqa: E402
from recstack.distributed import ddp  # noqa: E402
from recstack.evaluate import topn_metrics  # noqa: E402
from recstack.models.base import make_model  # noqa: E402
from recstack.split import stratified_split  # noqa: E402

BASE = {"epochs": 3, "early_stopping": False, "batch_size": 512, "factors": 16, "seed": 0, "threads": 1}


def test_shard_splits_every_batch_tensor_into_near_equal_parts(monkeypatch):
    batch = (torch.arange(10), torch.arange(20).reshape(10, 2), torch.ones(3), "meta")
    assert list(ddp.shard([batch]))[0] is batch  # outside a process group: unchanged
    monkeypatch.setattr(ddp, "active", lambda: True)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(ddp.dist, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(ddp.dist, "get_world_size", lambda: 3)
        parts.append(list(ddp.shard([batch]))[0])
    assert [p[0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert torch.equal(torch.cat([p[1] for p in parts]), batch[1])
    assert all(p[2] is batch[2] and p[3] == "meta" for p in parts)  # other shapes pass through


@pytest.mark.slow
def test_two_processes_reach_the_one_process_ndcg():
    data = synthetic_interactions(300, 150, 9000, seed=4)
    train, test = stratified_split(data, 0.75, "item", 42)
    one = make_model("lightgcn", BASE).fit(train)
    two = make_model("lightgcn", {**BASE, "engine": "ddp", "processes": 2}).fit(train)
    a = topn_metrics(one, train, test, 10, "train")[0]["ndcg@10"]
    b = topn_metrics(two, train, test, 10, "train")[0]["ndcg@10"]
    assert abs(a - b) <= 0.005
    assert two.epochs_ == 3 and two.config.engine == "ddp"
    # the same global batches: the weights agree up to float summation order (Adam amplifies it a little)
    w1 = one.network_.state_dict()
    w2 = two.network_.state_dict()
    assert all(torch.allclose(w1[k], w2[k], atol=5e-3) for k in w1)
