"""GRU4Rec (`gru4rec`): a recurrent network over each user's history (torch).

Hidasi, Karatzoglou, Baltrunas & Tikk, *Session-based Recommendations with Recurrent Neural
Networks* (ICLR 2016). A user's history, ordered by (timestamp, input row order) and cut to the
last `max_len` items, is embedded, passed through `layers` GRU layers, and the hidden state h_t
after each item predicts the next item: s(u, i) = h_T · e_i with the item embeddings shared
between input and output (as in the improved GRU4Rec of Hidasi & Karatzoglou, CIKM 2018).

The paper trains session-parallel mini-batches with ranking losses (TOP1, BPR) over sampled
negatives; here, as for `sasrec`, each window's next item is predicted at every position with
full softmax cross-entropy (`loss="ce"`; the sampled binary loss is `loss="bce"`), which the
CIKM 2018 follow-up and later reproductions find at least as accurate on small catalogues.
A user's whole history is one sequence (the "session"); the GRU starts at its first item
(left padding is moved behind the items, so it never enters a real position's recurrence). Histories, windows, early
stopping, scoring and `partial_fit` come from `recstack.models.sequential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recstack.models.config import require
from recstack.models.sequential import SequentialConfig, SequentialModel


@dataclass(frozen=True)
class GRU4RecConfig(SequentialConfig):
    """Hyperparameters of `gru4rec` (see `SequentialConfig`): `layers` stacked GRU layers of size `factors`."""

    layers: int = 1

    def check(self) -> None:
        super().check()
        require(self.layers >= 1, "layers", self.layers, "must be ≥ 1")


class GRU4RecNet(nn.Module):
    """forward(seq (B, L) int64, 0 = padding) → (B, L, d) hidden states; items: (n_items, d)."""

    def __init__(self, n_items: int, factors: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, factors, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(factors, factors, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(factors, factors)
        nn.init.xavier_normal_(self.item.weight[1:])

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        n, length = seq.shape
        lengths = (seq > 0).sum(1).clamp(min=1)
        # left padding → right padding, so the GRU starts at each sequence's first item; the
        # recurrence is causal, so the trailing padding touches no real position's output (and is
        # moved back to the front). Not packed: on the CPU a packed GRU trains 3-4x slower.
        shift = (length - lengths)[:, None]
        pos = torch.arange(length, device=seq.device)[None]
        right = torch.gather(seq, 1, (pos + shift) % length)
        h, _ = self.gru(self.dropout(self.item(right)))
        h = torch.gather(h, 1, ((pos - shift) % length)[..., None].expand(-1, -1, h.shape[-1]))
        return self.out(self.dropout(h))

    def item_weights(self) -> torch.Tensor:
        return self.item.weight[1:]


class GRU4Rec(SequentialModel):
    """GRU4Rec (Hidasi et al. 2016) trained on next-item prediction (state: see `SequentialModel`)."""

    name = "gru4rec"
    config_class = GRU4RecConfig

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [64, 128, 256]),
            "layers": trial.suggest_int("layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "max_len": trial.suggest_categorical("max_len", [50, 100, 200]),
            "learning_rate": trial.suggest_float("learning_rate", 5e-4, 5e-3, log=True),
        }

    def build_network(self) -> nn.Module:
        c = self.config
        return GRU4RecNet(self.n_items_, c.factors, c.layers, c.dropout)
