"""LightGCN (`lightgcn`): graph convolution without transforms or non-linearities (torch).

He, Deng, Wang, Li, Zhang & Wang, *LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation* (SIGIR 2020). Users and items are the nodes of one bipartite graph with the
symmetric-normalised adjacency Â = D^-1/2 A D^-1/2 ((n_users + n_items)², a torch sparse
tensor). The ego embeddings E⁰ are propagated `layers` times, E^{k+1} = Â E^k, and the final
embedding is the layer average (E⁰ + … + E^K) / (K + 1). Training: BPR on (user, positive,
sampled negative) triples with L2 `reg` on the batch's ego embeddings, as in the paper's code
(so Adam runs without weight decay). Options (off by default): `negatives` > 1 draws several
negatives per positive and averages their BPR terms, or with `hard_negatives` keeps only the
highest-scored one (dynamic negative sampling, Zhang et al. SIGIR 2013). The shared trainer's
`lr_decay` (used by the msr-75 config) multiplies the learning rate after every epoch.
Scoring: user embeddings @ item embeddings.T in batches.

Training, early stopping on validation NDCG@10, seeding and save/load come from
`recstack.models.torch_base`. The graph is the training part's (after early stopping on a carved
holdout, scoring uses the whole training part's graph); it is saved as CSR arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recstack.data.interactions import Interactions
from recstack.models.config import require
from recstack.models.torch_base import TorchConfig, TorchModel, positives, torch_settings


@dataclass(frozen=True)
class LightGCNConfig(TorchConfig):
    """Hyperparameters of `lightgcn`; `reg` is the paper's λ on ego embeddings, not weight decay."""

    factors: int = 64
    layers: int = 3  # graph propagation steps, averaged with the ego layer (0: plain BPR-MF)
    init_std: float = 0.1
    epochs: int = 200
    batch_size: int = 2048
    learning_rate: float = 5e-3
    reg: float = 1e-3  # L2 on the batch's ego embeddings (λ of the paper, not weight decay)
    patience: int = 10
    negatives: int = 1  # negatives sampled per positive
    hard_negatives: bool = False  # BPR on the highest-scored of the `negatives`, else their mean

    def check(self) -> None:
        super().check()
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.layers >= 0, "layers", self.layers, "must be ≥ 0 (0: plain BPR-MF)")
        require(self.init_std > 0, "init_std", self.init_std, "must be > 0")
        require(self.negatives >= 1, "negatives", self.negatives, "must be ≥ 1")


def normalized_adjacency(graph: sp.csr_matrix) -> sp.csr_matrix:
    """Â = D^-1/2 A D^-1/2 for A = [[0, R], [Rᵀ, 0]]; R: (n_users, n_items) 0/1. Isolated nodes → 0."""
    n_users, n_items = graph.shape
    a = sp.bmat([[None, graph], [graph.T, None]], format="csr", dtype=np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    d = sp.diags(inv)
    return (d @ a @ d).tocsr().astype(np.float32)


def normalized_adjacency_slow(graph: np.ndarray) -> np.ndarray:
    """Dense twin of `normalized_adjacency`: Â[a, b] = A[a, b] / sqrt(deg(a) · deg(b))."""
    n_users, n_items = graph.shape
    n = n_users + n_items
    a = np.zeros((n, n))
    a[:n_users, n_users:] = graph
    a[n_users:, :n_users] = graph.T
    deg = a.sum(axis=1)
    out = np.zeros_like(a)
    for i, j in zip(*np.nonzero(a), strict=True):
        out[i, j] = a[i, j] / np.sqrt(deg[i] * deg[j])
    return out


class _ScipyPropagate(torch.autograd.Function):
    """y = Â x with a SciPy CSR Â on the CPU (several times faster than torch.sparse.mm there).

    Â is symmetric, so the gradient is Â · grad again.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, adj: sp.csr_matrix) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return torch.from_numpy(np.asarray(adj @ x.detach().numpy(), np.float32))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return torch.from_numpy(np.asarray(ctx.adj @ grad.contiguous().numpy(), np.float32)), None


def propagate(adj: torch.Tensor | sp.csr_matrix, x: torch.Tensor) -> torch.Tensor:
    """Â x: SciPy on the CPU, `torch.sparse.mm` for a torch sparse Â (e.g. on a GPU)."""
    if isinstance(adj, sp.csr_matrix):
        return _ScipyPropagate.apply(x, adj)
    return torch.sparse.mm(adj, x)


class LightGCNNet(nn.Module):
    """Ego embeddings + propagation. forward(adj) → ((n_users, d), (n_items, d)) final embeddings."""

    def __init__(self, n_users: int, n_items: int, factors: int, layers: int, init_std: float) -> None:
        super().__init__()
        self.n_users = n_users
        self.layers = layers
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        nn.init.normal_(self.user.weight, 0.0, init_std)
        nn.init.normal_(self.item.weight, 0.0, init_std)

    def forward(self, adj: torch.Tensor | sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([self.user.weight, self.item.weight])
        total = e
        for _ in range(self.layers):
            e = propagate(adj, e)
            total = total + e
        total = total / (self.layers + 1)
        return total[:self.n_users], total[self.n_users:]


class LightGCN(TorchModel):
    """LightGCN (He et al. 2020) with BPR and uniformly sampled negatives.

    State: the network (ego embeddings), and the user × item graph as CSR arrays
    `graph_indptr_`, `graph_indices_` (n_users + 1,), (nnz,).
    """

    name = "lightgcn"
    config_class = LightGCNConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
            "layers": trial.suggest_int("layers", 1, 4),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 2e-2, log=True),
            "reg": trial.suggest_float("reg", 1e-6, 1e-2, log=True),
            "lr_decay": trial.suggest_float("lr_decay", 0.95, 1.0),
            "negatives": trial.suggest_categorical("negatives", [1, 2, 4]),
        }

    # ---- graph -----------------------------------------------------------------------------------
    def set_graph(self, data: Interactions) -> None:
        """Use `data`'s binary user × item matrix as the graph (and the positives for sampling)."""
        m = sp.csr_matrix((np.ones(len(data), np.float32), (data.user, data.item)),
                          shape=(data.n_users, data.n_items))
        m.sum_duplicates()
        m.sort_indices()
        self.graph_indptr_ = m.indptr.astype(np.int64)
        self.graph_indices_ = m.indices.astype(np.int32)
        self._adj = None

    def adjacency(self) -> torch.Tensor | sp.csr_matrix:
        """Â (built once, cached): SciPy CSR on the CPU, a torch sparse COO tensor on a GPU."""
        if getattr(self, "_adj", None) is None:
            data = np.ones(len(self.graph_indices_), np.float32)
            graph = sp.csr_matrix((data, self.graph_indices_, self.graph_indptr_),
                                  shape=(self.n_users_, self.n_items_))
            a = normalized_adjacency(graph)
            if self.device.type == "cpu":
                self._adj = a
            else:
                a = a.tocoo()
                idx = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
                self._adj = torch.sparse_coo_tensor(idx, torch.from_numpy(a.data), a.shape,
                                                    check_invariants=True).coalesce().to(self.device)
        return self._adj

    # ---- hooks -----------------------------------------------------------------------------------
    def setup(self, train: Interactions) -> None:
        self.set_graph(train)
        n = self.n_items_
        self._pos_keys = np.unique(train.user.astype(np.int64) * n + train.item)  # sorted (u, i) keys

    def build_network(self) -> nn.Module:
        c = self.config
        return LightGCNNet(self.n_users_, self.n_items_, c.factors, c.layers, c.init_std)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.network_.parameters(), lr=self.config.learning_rate)

    def sample_negatives(self, users: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One item per entry of `users` drawn uniformly among items that user has no training row with."""
        n = self.n_items_
        neg = torch.randint(n, (len(users),), generator=generator).numpy().astype(np.int64)
        for _ in range(100):
            keys = users * n + neg
            pos = np.searchsorted(self._pos_keys, keys).clip(max=len(self._pos_keys) - 1)
            bad = np.flatnonzero(self._pos_keys[pos] == keys)
            if not len(bad):
                break
            neg[bad] = torch.randint(n, (len(bad),), generator=generator).numpy()
        return neg

    def train_batches(self, train: Interactions, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        c = self.config
        users = train.user.astype(np.int64)
        items = train.item.astype(np.int64)
        n_neg = c.negatives
        for chunk in self.shuffled(len(train), generator):
            idx = chunk.numpy()
            u = users[idx]
            neg = self.sample_negatives(np.repeat(u, n_neg), generator)
            if n_neg > 1:
                neg = neg.reshape(len(u), n_neg)
            yield tuple(torch.from_numpy(a).to(self.device) for a in (u, items[idx], neg))

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """BPR: u, i (B,), j (B,) or (B, n) negatives: their mean BPR, or the hardest one's."""
        u, i, j = batch
        net = self.network_
        users, items = net(self.adjacency())
        eu, ei = users[u], items[i]
        pos = (eu * ei).sum(1)
        if j.dim() == 1:
            bpr = -F.logsigmoid(pos - (eu * items[j]).sum(1)).mean()
            neg_ego = net.item.weight[j].pow(2).sum()
        elif self.config.hard_negatives:
            neg = torch.einsum("bd,bnd->bn", eu, items[j])
            j = j.gather(1, neg.detach().argmax(1, keepdim=True)).squeeze(1)
            bpr = -F.logsigmoid(pos - (eu * items[j]).sum(1)).mean()
            neg_ego = net.item.weight[j].pow(2).sum()
        else:
            neg = torch.einsum("bd,bnd->bn", eu, items[j])
            bpr = -F.logsigmoid(pos[:, None] - neg).mean()
            neg_ego = net.item.weight[j].pow(2).sum() / j.shape[1]
        ego = net.user.weight[u].pow(2).sum() + net.item.weight[i].pow(2).sum() + neg_ego
        return bpr + self.config.reg * 0.5 * ego / len(u)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        u, i = self.network_(self.adjacency())
        return u[users] @ i.T

    # ---- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._adj = None
        super()._fit(train, valid)
        self.set_graph(positives(train, self.config.min_rating))  # score on the whole training graph

    def set_state(self, arrays: Any, scalars: Any) -> None:
        self._adj = None
        super().set_state(arrays, scalars)

    # ---- optional abilities ------------------------------------------------------------------
    def _propagated(self) -> tuple[np.ndarray, np.ndarray]:
        with torch_settings(self.config.threads), torch.no_grad():
            u, i = self.network_(self.adjacency())
            return u.float().cpu().numpy(), i.float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """(n_items, factors) float32 propagated item embeddings (for the ANN index)."""
        return self._propagated()[1]

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), factors) propagated user embeddings; user·item is the score."""
        return self._propagated()[0][np.asarray(users, np.int64)]
