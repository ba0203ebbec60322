"""Neural Collaborative Filtering (He, Liao, Zhang, Nie, Hu & Chua, WWW 2017): GMF, MLP, NeuMF.

`NCF` (name `ncf`), `variant`:
- `gmf`: logit(u, i) = h · (p_u ⊙ q_i)
- `mlp`: logit(u, i) = h · tower([p_u; q_i]), a ReLU tower halving to `factors` units over
  `mlp_layers` layers (embeddings of factors · 2^(mlp_layers-1) each)
- `neumf`: logit(u, i) = h · [p_u ⊙ q_i ; tower([p'_u; q'_i])], separate embeddings per branch;
  `pretrain=True` first trains a GMF and an MLP with the same settings and starts NeuMF from
  their weights (output layer = [α·h_gmf ; (1-α)·h_mlp], α = 0.5), as in the paper, then
  fine-tunes at the smaller `finetune_learning_rate` (the paper uses plain SGD there).

Implicit feedback: every training interaction is a positive; each epoch draws `negatives`
uniformly random non-interacted items per positive; binary cross-entropy on the logits.
Scoring a batch of users against all items is matrix work: GMF is one product, the tower's
first layer is split into a user part and an item part that broadcast to (B, n_items, width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstack.data.interactions import Interactions
from recstack.models.config import require
from recstack.models.torch_base import TorchConfig, TorchModel


@dataclass(frozen=True)
class NCFConfig(TorchConfig):
    """Hyperparameters of `ncf`; `factors` is the predictive factors (GMF size, last tower layer)."""

    variant: Literal["gmf", "mlp", "neumf"] = "neumf"  # neumf: the gmf and mlp branches side by side
    factors: int = 16
    mlp_layers: int = 3  # layers of the MLP tower, halving down to factors units
    negatives: int = 4  # random non-interacted items drawn per positive, each epoch
    pretrain: bool = False  # neumf: start from a GMF and an MLP trained first
    alpha: float = 0.5  # pretrain: GMF share of the output layer (MLP: 1 − alpha)
    finetune_learning_rate: float = 1e-4  # pretrain: Adam step size of the NeuMF fine-tuning
    dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 1e-3
    reg: float = 0.0
    patience: int = 3

    def check(self) -> None:
        super().check()
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(1 <= self.mlp_layers <= 6, "mlp_layers", self.mlp_layers, "must be in 1..6")
        require(self.negatives >= 1, "negatives", self.negatives, "must be ≥ 1")
        require(0 <= self.alpha <= 1, "alpha", self.alpha, "must be in [0, 1]")
        require(self.finetune_learning_rate > 0, "finetune_learning_rate", self.finetune_learning_rate,
                "must be > 0")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        require(not self.pretrain or self.variant == "neumf", "pretrain", self.pretrain,
                "only NeuMF (variant='neumf') is initialised from GMF and MLP")


class NCFNet(nn.Module):
    """GMF and/or MLP branches plus the output layer `out`. Forward: (B,) users, (B,) items → (B,) logits."""

    def __init__(self, n_users: int, n_items: int, variant: str, factors: int, mlp_layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.variant = variant
        width = 0
        if variant in ("gmf", "neumf"):
            self.gmf_user = nn.Embedding(n_users, factors)
            self.gmf_item = nn.Embedding(n_items, factors)
            width += factors
        if variant in ("mlp", "neumf"):
            emb = factors * 2 ** (mlp_layers - 1)
            self.mlp_user = nn.Embedding(n_users, emb)
            self.mlp_item = nn.Embedding(n_items, emb)
            sizes = [2 * emb] + [factors * 2 ** (mlp_layers - 1 - k) for k in range(mlp_layers)]
            self.tower = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            self.dropout = nn.Dropout(dropout)
            width += factors
        self.out = nn.Linear(width, 1)
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2 and ("user" in name or "item" in name):
                nn.init.normal_(p, 0.0, 0.01)
            elif name.endswith("weight"):
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)

    def _tower(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.tower[1:]:
            h = layer(self.dropout(torch.relu(h)))
        return torch.relu(h)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.variant in ("gmf", "neumf"):
            parts.append(self.gmf_user(users) * self.gmf_item(items))
        if self.variant in ("mlp", "neumf"):
            h = self.tower[0](torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=1))
            parts.append(self._tower(h))
        return self.out(torch.cat(parts, dim=1)).squeeze(1)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """(B, n_items) logits of `users` against every item, without a loop over items."""
        w = self.out.weight[0]
        logits = self.out.bias.expand(len(users), -1)
        k = 0
        if self.variant in ("gmf", "neumf"):
            f = self.gmf_user.embedding_dim
            logits = logits + (self.gmf_user(users) * w[:f]) @ self.gmf_item.weight.T
            k = f
        if self.variant in ("mlp", "neumf"):
            first = self.tower[0]
            emb = self.mlp_user.embedding_dim
            user_part = self.mlp_user(users) @ first.weight[:, :emb].T + first.bias  # (B, d1)
            item_part = self.mlp_item.weight @ first.weight[:, emb:].T  # (I, d1)
            h = self._tower(user_part[:, None, :] + item_part[None, :, :])  # (B, I, factors)
            logits = logits + h @ w[k:]
        return logits


class NCF(TorchModel):
    """Neural Collaborative Filtering: GMF, MLP or NeuMF trained on sampled negatives with BCE."""

    name = "ncf"
    config_class = NCFConfig
    score_batch_users = 256

    def build_network(self) -> nn.Module:
        c = self.config
        return NCFNet(self.n_users_, self.n_items_, c.variant, c.factors, c.mlp_layers, c.dropout)

    def setup(self, train: Interactions) -> None:
        self._users = torch.from_numpy(train.user.astype(np.int64))
        self._items = torch.from_numpy(train.item.astype(np.int64))
        self._keys = np.unique(train.user.astype(np.int64) * train.n_items + train.item)

    def init_network(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        if not c.pretrain:
            return
        net = self.network_
        base = {k: v for k, v in c.to_dict().items() if k not in ("variant", "pretrain")}
        gmf = NCF(base, variant="gmf").fit(train, valid).network_
        mlp = NCF(base, variant="mlp").fit(train, valid).network_
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.startswith("gmf_"):
                    p.copy_(gmf.get_parameter(name))
                elif name.startswith(("mlp_", "tower")):
                    p.copy_(mlp.get_parameter(name))
            f = c.factors
            net.out.weight[:, :f] = c.alpha * gmf.out.weight
            net.out.weight[:, f:] = (1 - c.alpha) * mlp.out.weight
            net.out.bias.copy_(c.alpha * gmf.out.bias + (1 - c.alpha) * mlp.out.bias)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam; a pretrained NeuMF fine-tunes at `finetune_learning_rate` (the paper switches to SGD)."""
        c = self.config
        if not c.pretrain:
            return super().make_optimizer()
        return torch.optim.Adam(self.network_.parameters(), lr=c.finetune_learning_rate, weight_decay=c.reg,
                                fused=True)

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(len(users),) items drawn uniformly among those each user has not interacted with."""
        n_items = self.n_items_
        items = torch.randint(n_items, (len(users),), generator=generator)
        u = users.numpy()
        for _ in range(50):
            keys = u * n_items + items.numpy()
            pos = np.searchsorted(self._keys, keys)
            hit = (pos < len(self._keys)) & (self._keys[np.minimum(pos, len(self._keys) - 1)] == keys)
            if not hit.any():
                break
            redo = torch.from_numpy(np.flatnonzero(hit))
            items[redo] = torch.randint(n_items, (len(redo),), generator=generator)
        return items

    def train_batches(self, train: Interactions, generator: torch.Generator):
        n_neg = self.config.negatives
        neg_users = self._users.repeat(n_neg)
        users = torch.cat([self._users, neg_users])
        items = torch.cat([self._items, self.sample_negatives(neg_users, generator)])
        labels = torch.cat([torch.ones(len(self._users)), torch.zeros(len(neg_users))])
        for chunk in self.shuffled(len(users), generator):
            yield (users[chunk].to(self.device), items[chunk].to(self.device), labels[chunk].to(self.device))

    def batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        users, items, labels = batch
        return F.binary_cross_entropy_with_logits(self.network_(users, items), labels)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        net = self.network_
        if self.config.variant == "gmf":
            return net.score_all(users)
        # the tower holds a (B, n_items, width) block: keep it near 2^24 numbers
        step = max(1, (1 << 24) // (self.n_items_ * net.tower[0].out_features))
        return torch.cat([net.score_all(chunk) for chunk in users.split(step)])

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [8, 16, 32, 64]),
            "mlp_layers": trial.suggest_int("mlp_layers", 1, 4),
            "negatives": trial.suggest_int("negatives", 1, 8),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "reg": trial.suggest_float("reg", 1e-8, 1e-4, log=True),
        }
