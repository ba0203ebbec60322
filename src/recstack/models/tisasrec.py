"""TiSASRec (`tisasrec`): time-interval-aware self-attention for next-item recommendation (torch).

Li, Wang & McAuley, *Time Interval Aware Self-Attention for Sequential Recommendation* (WSDM
2020). As `sasrec` (item + position embeddings, causal pre-norm blocks, last position's output
scored against the shared item embeddings), but each attention block also sees the time
interval between every pair of items i, j in the window, bucketed to r_ij ∈ {0..time_span}:

    a_ij = softmax_j( q_i · (k_j + R^K[r_ij]) / sqrt(d_h) ),   o_i = Σ_j a_ij (v_j + R^V[r_ij])

with R^K, R^V learned (time_span + 1, d) tables shared by the blocks (as in the paper's code).
`intervals="user"` is the paper's bucketing: |t_i − t_j| divided by the smallest non-zero gap in
that user's window, floored, clipped at `time_span`. `intervals="log"` (default) buckets
floor(log2(1 + |t_i − t_j| seconds)) instead; on MovieLens, where users rate many films within
seconds of each other, the paper's scale puts almost every pair in the last bucket.

The interval terms are computed without a (B, L, L, d) tensor: q_i · R^K[r] for all r is a
(B, H, L, R) product gathered at r_ij, and Σ_j a_ij R^V[r_ij] is a scatter-add of the attention
weights into (B, H, L, R) buckets times R^V. Histories, windows (with timestamps), early stopping,
scoring and `partial_fit` come from `recstack.models.sequential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from recstack.models.config import require
from recstack.models.sequential import SequentialConfig, SequentialModel


@dataclass(frozen=True)
class TiSASRecConfig(SequentialConfig):
    """Hyperparameters of `tisasrec` (see `SequentialConfig`): `heads` must divide `factors`."""

    blocks: int = 2
    heads: int = 1
    time_span: int = 256
    intervals: Literal["log", "user"] = "log"

    def check(self) -> None:
        super().check()
        require(self.blocks >= 1, "blocks", self.blocks, "must be ≥ 1")
        require(self.heads >= 1 and self.factors % self.heads == 0, "heads", self.heads,
                f"must be ≥ 1 and divide factors={self.factors}")
        require(self.time_span >= 1, "time_span", self.time_span, "must be ≥ 1")


def interval_buckets(times: torch.Tensor, real: torch.Tensor, span: int, mode: str) -> torch.Tensor:
    """(B, L, L) int64 bucket of |t_i − t_j| for (B, L) timestamps; `real` marks non-padding."""
    dt = (times[:, :, None] - times[:, None, :]).abs()
    if mode == "log":
        r = torch.floor(torch.log2(1.0 + dt.double())).long()
    else:
        gaps = (times[:, 1:] - times[:, :-1]).abs()
        gaps = torch.where(real[:, 1:] & real[:, :-1] & (gaps > 0), gaps, torch.iinfo(torch.int64).max)
        scale = gaps.min(dim=1).values
        scale = torch.where(scale == torch.iinfo(torch.int64).max, torch.ones_like(scale), scale)
        r = dt // scale[:, None, None]
    return r.clamp(0, span)


class TimeBlock(nn.Module):
    """One pre-norm block: interval-aware multi-head causal attention, then a ReLU feed-forward."""

    def __init__(self, factors: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(factors)
        self.norm2 = nn.LayerNorm(factors)
        self.q = nn.Linear(factors, factors)
        self.k = nn.Linear(factors, factors)
        self.v = nn.Linear(factors, factors)
        self.o = nn.Linear(factors, factors)
        self.ff = nn.Sequential(nn.Linear(factors, factors), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(factors, factors))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, allowed: torch.Tensor,
                rk: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        h, dh = self.heads, d // self.heads
        y = self.norm1(x)

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, L, d) → (B, H, L, dh)
            return t.view(n, length, h, dh).transpose(1, 2)

        q, k, v = split(self.q(y)), split(self.k(y)), split(self.v(y))
        rk_h = rk.view(-1, h, dh).transpose(0, 1)  # (H, R, dh)
        rv_h = rv.view(-1, h, dh).transpose(0, 1)
        idx = buckets[:, None].expand(n, h, length, length)
        logits = q @ k.transpose(-1, -2) + torch.gather(q @ rk_h.transpose(-1, -2)[None], -1, idx)
        logits = logits / dh ** 0.5
        logits = logits.masked_fill(~allowed[:, None], float("-inf"))
        att = self.drop(torch.softmax(logits, dim=-1))
        per_bucket = torch.zeros(n, h, length, rk.shape[0], dtype=att.dtype, device=att.device)
        per_bucket.scatter_add_(-1, idx, att)
        out = att @ v + per_bucket @ rv_h[None]
        x = x + self.drop(self.o(out.transpose(1, 2).reshape(n, length, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class TiSASRecNet(nn.Module):
    """forward(seq (B, L) int64, times (B, L) int64) → (B, L, d) hidden states; items: (n_items, d)."""

    def __init__(self, n_items: int, factors: int, blocks: int, heads: int, dropout: float,
                 max_len: int, time_span: int, intervals: str) -> None:
        super().__init__()
        self.time_span, self.intervals = time_span, intervals
        self.item = nn.Embedding(n_items + 1, factors, padding_idx=0)
        self.position = nn.Embedding(max_len, factors)
        self.interval_k = nn.Embedding(time_span + 1, factors)
        self.interval_v = nn.Embedding(time_span + 1, factors)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TimeBlock(factors, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(factors)
        for w in (self.item.weight[1:], self.position.weight, self.interval_k.weight, self.interval_v.weight):
            nn.init.xavier_normal_(w)
        self.scale = factors ** 0.5

    def forward(self, seq: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        n, length = seq.shape
        real = seq > 0
        pos = torch.arange(length, device=seq.device)
        buckets = interval_buckets(times, real, self.time_span, self.intervals)
        at = pos + self.position.num_embeddings - length  # positions count from the right
        x = self.item(seq) * self.scale + self.position(at)[None]
        x = self.dropout(x) * real[..., None]
        # a query sees earlier-or-same real keys, and always itself (so no row is fully masked)
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        allowed = (pos[None, :] <= pos[:, None])[None] & (real[:, None, :] | eye)
        rk = self.dropout(self.interval_k.weight)
        rv = self.dropout(self.interval_v.weight)
        for block in self.blocks:
            x = block(x, buckets, allowed, rk, rv) * real[..., None]
        return self.norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:]


class TiSASRec(SequentialModel):
    """TiSASRec (Li et al. 2020) trained on next-item prediction (state: see `SequentialModel`)."""

    name = "tisasrec"
    config_class = TiSASRecConfig
    uses_time = True

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128]),
            "blocks": trial.suggest_int("blocks", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.6),
            "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
            "learning_rate": trial.suggest_float("learning_rate", 2e-4, 5e-3, log=True),
            "intervals": trial.suggest_categorical("intervals", ["log", "user"]),
        }

    def build_network(self) -> nn.Module:
        c = self.config
        return TiSASRecNet(self.n_items_, c.factors, c.blocks, c.heads, c.dropout, c.max_len,
                           c.time_span, c.intervals)

    def encode(self, seq: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        return self.network_(seq, times)
