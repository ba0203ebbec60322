"""SASRec (`sasrec`): self-attentive sequential recommendation (torch).

Kang & McAuley, *Self-Attentive Sequential Recommendation* (ICDM 2018). A user's history, ordered
by (timestamp, input row order) and cut to the last `max_len` items, is embedded (item +
learned position embeddings, left-padded with a padding item), passed through `blocks`
pre-norm causal self-attention blocks (`torch.nn.TransformerEncoderLayer`), and the last
position's output h is scored against every item embedding: s(u, i) = h_u · e_i (shared
input/output embeddings, as in the paper).

Training predicts the next item at every position of non-overlapping windows of `max_len + 1`
items cut from the end of each user's sequence. `loss="ce"` (default) uses full softmax
cross-entropy over all items, which trains in far fewer epochs than the paper's binary
cross-entropy with one sampled negative per position (`loss="bce"`, also available) and is
cheap at MovieLens' catalogue size (Klenitskiy & Vasilev, RecSys 2023, compare the two).

Early stopping (from `recstack.models.torch_base`) watches NDCG@10 on the validation part given
to `fit` — on `leave-last-out`, each user's second-to-last item — or, without one, on each
user's last training item. With `valid_history`, the validation items then extend the users'
scoring sequences, so that the test step follows the validation item as in the paper's protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstack.data.interactions import Interactions
from recstack.models.config import require
from recstack.models.torch_base import TorchConfig, TorchModel, positives, torch_settings


@dataclass(frozen=True)
class SASRecConfig(TorchConfig):
    """Hyperparameters of `sasrec`: `factors` is the hidden size d, `heads` must divide it.

    `valid_fraction` is unused: without a validation part, the holdout for early stopping is
    each user's last training item.
    """

    factors: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    loss: Literal["ce", "bce"] = "ce"
    valid_history: bool = True
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    reg: float = 0.0
    patience: int = 3

    def check(self) -> None:
        super().check()
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.blocks >= 1, "blocks", self.blocks, "must be ≥ 1")
        require(self.heads >= 1 and self.factors % self.heads == 0, "heads", self.heads,
                f"must be ≥ 1 and divide factors={self.factors}")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        require(self.max_len >= 2, "max_len", self.max_len, "must be ≥ 2")


# ---- sequences ------------------------------------------------------------------------------------
def user_sequences(parts: list[Interactions]) -> list[np.ndarray]:
    """Each user's item indices in (timestamp, part, row order); later parts count as later at ties."""
    user = np.concatenate([p.user for p in parts]).astype(np.int64)
    item = np.concatenate([p.item for p in parts]).astype(np.int64)
    ts = np.concatenate([p.timestamp for p in parts])
    order = np.lexsort((np.arange(len(user)), ts, user))
    counts = np.bincount(user, minlength=parts[0].n_users)
    return np.split(item[order], np.cumsum(counts)[:-1])


def last_window(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """(n_users, max_len) int64: the last `max_len` items + 1, left-padded with 0 (the padding item)."""
    out = np.zeros((len(seqs), max_len), np.int64)
    for u, s in enumerate(seqs):
        tail = s[-max_len:]
        if len(tail):
            out[u, max_len - len(tail):] = tail + 1
    return out


def training_windows(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping next-item windows cut from the end of each sequence.

    Returns (inputs, targets), each (n_windows, max_len) int64 of item index + 1 with 0 padding;
    targets[w, t] is the item that follows inputs[w, t].
    """
    inputs, targets = [], []
    for s in seqs:
        s = s + 1
        end = len(s)
        while end >= 2:
            start = max(end - max_len - 1, 0)
            chunk = s[start:end]
            x = np.zeros(max_len, np.int64)
            y = np.zeros(max_len, np.int64)
            x[max_len - len(chunk) + 1:] = chunk[:-1]
            y[max_len - len(chunk) + 1:] = chunk[1:]
            inputs.append(x)
            targets.append(y)
            end = start + 1  # the next window's last target is this window's first input
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


def last_item_holdout(data: Interactions) -> tuple[Interactions, Interactions]:
    """Each user's last item in (timestamp, row order) → validation when the user has ≥ 2 rows."""
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))
    u = data.user[order]
    is_last = np.r_[u[1:] != u[:-1], True]
    counts = np.bincount(data.user, minlength=data.n_users)
    valid = np.zeros(len(data), bool)
    valid[order[is_last & (counts[u] >= 2)]] = True
    return data.subset(~valid), data.subset(valid)


# ---- network --------------------------------------------------------------------------------------
class SASRecNet(nn.Module):
    """forward(seq (B, L) int64, 0 = padding) → (B, L, d) hidden states; items: (n_items, d)."""

    def __init__(self, n_items: int, factors: int, blocks: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.item = nn.Embedding(n_items + 1, factors, padding_idx=0)
        self.position = nn.Embedding(max_len, factors)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(factors, heads, dim_feedforward=factors, dropout=dropout,
                                       activation="relu", batch_first=True, norm_first=True)
            for _ in range(blocks))
        self.norm = nn.LayerNorm(factors)
        nn.init.xavier_normal_(self.item.weight[1:])
        nn.init.xavier_normal_(self.position.weight)
        self.scale = factors ** 0.5

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        n, length = seq.shape
        real = seq > 0
        pos = torch.arange(length, device=seq.device)
        x = self.item(seq) * self.scale + self.position(pos)[None]
        x = self.dropout(x) * real[..., None]
        # a query sees earlier-or-same real keys, and always itself (so no row is fully masked)
        causal = pos[None, :] <= pos[:, None]
        allowed = causal[None] & (real[:, None, :] | torch.eye(length, dtype=torch.bool, device=seq.device)[None])
        mask = (~allowed).repeat_interleave(self.heads, dim=0)
        for block in self.blocks:
            x = block(x, src_mask=mask) * real[..., None]
        return self.norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:]


class SASRec(TorchModel):
    """SASRec (Kang & McAuley 2018) trained on next-item prediction.

    State: the network, and `sequences_` (n_users, max_len) int64: each user's scoring input
    (last max_len items + 1, left-padded with 0).
    """

    name = "sasrec"
    config_class = SASRecConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128]),
            "blocks": trial.suggest_int("blocks", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.6),
            "max_len": trial.suggest_categorical("max_len", [25, 50, 100, 200]),
            "learning_rate": trial.suggest_float("learning_rate", 2e-4, 5e-3, log=True),
        }

    # ---- hooks -----------------------------------------------------------------------------------
    def setup(self, train: Interactions) -> None:
        seqs = user_sequences([train])
        self.sequences_ = last_window(seqs, self.config.max_len)
        self._seq = None
        self._windows = training_windows(seqs, self.config.max_len)

    def build_network(self) -> nn.Module:
        c = self.config
        return SASRecNet(self.n_items_, c.factors, c.blocks, c.heads, c.dropout, c.max_len)

    def train_batches(self, train: Interactions, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        inputs, targets = (torch.from_numpy(a) for a in self._windows)
        for chunk in self.shuffled(len(inputs), generator):
            x, y = inputs[chunk], targets[chunk]
            if self.config.loss == "bce":
                neg = torch.randint(1, self.n_items_ + 1, y.shape, generator=generator)
                yield x.to(self.device), y.to(self.device), neg.to(self.device)
            else:
                yield x.to(self.device), y.to(self.device)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        net = self.network_
        h = net(x)
        real = y > 0
        h = h[real]
        if self.config.loss == "ce":
            return F.cross_entropy(h @ net.item_weights().T, y[real] - 1)
        pos = (h * net.item(y[real])).sum(-1)
        neg = (h * net.item(batch[2][real])).sum(-1)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_seq", None) is None:
            self._seq = torch.from_numpy(np.asarray(self.sequences_, np.int64)).to(self.device)
        h = self.network_(self._seq[users])[:, -1]
        return h @ self.network_.item_weights().T

    # ---- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        full = positives(train, c.min_rating)
        if valid is None and c.early_stopping:
            part, holdout = last_item_holdout(full)
            super()._fit(part, holdout)
            if c.refit:  # retrain on every training item for the best number of epochs
                best, losses, ndcgs = self.best_epoch_, self.loss_history_, self.valid_ndcg_history_
                with torch_settings(c.threads):
                    self._train(full, None, best)
                self.network_.eval()
                self.best_epoch_, self.loss_history_, self.valid_ndcg_history_ = best, losses, ndcgs
        else:
            super()._fit(train, valid)
        parts = [full]
        if valid is not None and c.valid_history:
            parts.append(positives(valid, c.min_rating))
        self.sequences_ = last_window(user_sequences(parts), c.max_len)
        self._seq = None
        self._windows = None

    def set_state(self, arrays: Any, scalars: Any) -> None:
        self._seq = None
        super().set_state(arrays, scalars)
