"""BERT4Rec (`bert4rec`): a bidirectional transformer trained with the cloze objective (torch).

Sun, Liu, Wu, Pei, Lin, Ou & Jiang, *BERT4Rec: Sequential Recommendation with Bidirectional
Encoder Representations from Transformer* (CIKM 2019). Windows of up to `max_len` items are cut
from the end of each user's history (non-overlapping, time order); each epoch, every real item
of a window is replaced by a [mask] token with probability `mask_prob` (at least one per window)
and the network — item + position embeddings, `blocks` pre-norm transformer blocks attending in
both directions (padding excluded), a final LayerNorm — predicts the masked items with full
softmax cross-entropy against the shared item embeddings. As in the paper, a share of windows
(`last_share`) masks only their last item, the case met at prediction time. To recommend, the
user's last `max_len − 1` items are followed by [mask] and that position's output h is scored:
s(u, i) = h_u · e_i.

The paper's output head adds a GELU projection and an item bias; this version scores against
the embeddings directly (so `partial_fit`'s new items need only an embedding row). Histories,
early stopping, scoring input and `partial_fit` come from `recstack.models.sequential`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recstack.models.config import require
from recstack.models.sequential import SequentialConfig, SequentialModel, length_batches


@dataclass(frozen=True)
class BERT4RecConfig(SequentialConfig):
    """Hyperparameters of `bert4rec` (see `SequentialConfig`); `heads` must divide `factors`."""

    blocks: int = 2
    heads: int = 2
    mask_prob: float = 0.2
    last_share: float = 0.1
    epochs: int = 100
    patience: int = 8

    def check(self) -> None:
        super().check()
        require(self.blocks >= 1, "blocks", self.blocks, "must be ≥ 1")
        require(self.heads >= 1 and self.factors % self.heads == 0, "heads", self.heads,
                f"must be ≥ 1 and divide factors={self.factors}")
        require(0 < self.mask_prob < 1, "mask_prob", self.mask_prob, "must be in (0, 1)")
        require(0 <= self.last_share <= 1, "last_share", self.last_share, "must be in [0, 1]")


def item_windows(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """(n_windows, max_len) int64 item index + 1, left-padded with 0: non-overlapping windows cut
    from the end of each sequence."""
    rows = []
    for s in seqs:
        for end in range(len(s), 0, -max_len):
            chunk = s[max(end - max_len, 0):end] + 1
            row = np.zeros(max_len, np.int64)
            row[max_len - len(chunk):] = chunk
            rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, max_len), np.int64)


class BERT4RecNet(nn.Module):
    """forward(seq (B, L) int64; 0 = padding, n_items + 1 = [mask]) → (B, L, d); items: (n_items, d)."""

    def __init__(self, n_items: int, factors: int, blocks: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.item = nn.Embedding(n_items + 2, factors, padding_idx=0)
        self.position = nn.Embedding(max_len, factors)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(factors, heads, dim_feedforward=4 * factors, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(blocks))
        self.norm = nn.LayerNorm(factors)
        nn.init.xavier_normal_(self.item.weight[1:])
        nn.init.xavier_normal_(self.position.weight)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        n, length = seq.shape
        real = seq > 0
        pos = torch.arange(length, device=seq.device)
        at = pos + self.position.num_embeddings - length  # positions count from the right
        x = self.dropout(self.item(seq) + self.position(at)[None]) * real[..., None]
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        mask = ~(real[:, None, :] | eye)  # every real key, both directions; itself always
        mask = mask.repeat_interleave(self.heads, dim=0)
        for block in self.blocks:
            x = block(x, src_mask=mask) * real[..., None]
        return self.norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:self.item.num_embeddings - 1]


class BERT4Rec(SequentialModel):
    """BERT4Rec (Sun et al. 2019), cloze-trained (state: see `SequentialModel`)."""

    name = "bert4rec"
    config_class = BERT4RecConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [64, 128]),
            "blocks": trial.suggest_int("blocks", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
            "mask_prob": trial.suggest_float("mask_prob", 0.1, 0.4),
            "learning_rate": trial.suggest_float("learning_rate", 2e-4, 5e-3, log=True),
        }

    def build_network(self) -> nn.Module:
        c = self.config
        return BERT4RecNet(self.n_items_, c.factors, c.blocks, c.heads, c.dropout, c.max_len)

    def make_windows(self, seqs: list[np.ndarray], times: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        return (item_windows(seqs, self.config.max_len),)

    def batches(self, windows: tuple[np.ndarray, ...], generator: torch.Generator,
                ) -> Iterator[tuple[torch.Tensor, ...]]:
        """(masked input, targets at masked positions else 0[, negatives]) per shuffled batch."""
        c = self.config
        rows = torch.from_numpy(windows[0])
        for chunk, width in length_batches(rows, c.batch_size, generator):
            seq = rows[chunk, -width:]
            real = seq > 0
            masked = (torch.rand(seq.shape, generator=generator) < c.mask_prob) & real
            last_only = torch.rand(len(seq), generator=generator) < c.last_share
            masked[last_only] = False
            none = ~masked.any(1)  # windows with nothing masked (and the last-only ones): the last item
            masked[none, -1] = True
            x = seq.masked_fill(masked, self.n_items_ + 1)
            y = seq.masked_fill(~masked, 0)
            batch = [x, y]
            if c.loss == "bce":
                batch.append(torch.randint(1, self.n_items_ + 1, y.shape, generator=generator))
            yield tuple(t.to(self.device) for t in batch)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        seq = self._scoring_input()[0][users]
        mask = torch.full((len(seq), 1), self.n_items_ + 1, dtype=seq.dtype, device=seq.device)
        h = self.last_states(torch.cat([seq[:, 1:], mask], 1), None)
        return h @ self.network_.item_weights().T

    def explain_input(self, seq: torch.Tensor, times: torch.Tensor | None,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As `score_users` reads it: the last `max_len − 1` items followed by [mask]."""
        mask = torch.full((len(seq), 1), self.n_items_ + 1, dtype=seq.dtype, device=seq.device)
        return torch.cat([seq[:, 1:], mask], 1), None
