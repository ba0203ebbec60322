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
Histories, windows, scoring and `partial_fit` come from `recstack.models.sequential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recstack.models.config import require
from recstack.models.sequential import (  # noqa: F401  (re-exported: the sequence helpers' old home)
    SequentialConfig,
    SequentialModel,
    last_item_holdout,
    last_window,
    training_windows,
    user_sequences,
)


@dataclass(frozen=True)
class SASRecConfig(SequentialConfig):
    """Hyperparameters of `sasrec` (see `SequentialConfig`): `heads` must divide `factors`."""

    blocks: int = 2
    heads: int = 1

    def check(self) -> None:
        super().check()
        require(self.blocks >= 1, "blocks", self.blocks, "must be ≥ 1")
        require(self.heads >= 1 and self.factors % self.heads == 0, "heads", self.heads,
                f"must be ≥ 1 and divide factors={self.factors}")


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
        # positions count from the right, so cutting leading padding columns changes nothing
        at = pos + self.position.num_embeddings - length
        x = self.item(seq) * self.scale + self.position(at)[None]
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


class SASRec(SequentialModel):
    """SASRec (Kang & McAuley 2018) trained on next-item prediction (state: see `SequentialModel`)."""

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

    def build_network(self) -> nn.Module:
        c = self.config
        return SASRecNet(self.n_items_, c.factors, c.blocks, c.heads, c.dropout, c.max_len)
