"""The shared base of the next-item models (`sasrec`, `gru4rec`, `bert4rec`, `tisasrec`).

Each user's history, ordered by (timestamp, input row order), is kept whole as CSR-like arrays
(`seq_indptr_`, `seq_items_`, `seq_times_`); the network reads its last `max_len` items
(`sequences_`, left-padded with 0, item index + 1) and, for time-aware models, their
timestamps (`time_sequences_`). A subclass gives the network and, where its objective is not
next-item prediction at every position, its own windows and loss.

Training (next-item, default): non-overlapping windows of `max_len + 1` items cut from the end
of each user's sequence, the next item predicted at every position — every prefix of the
window is a training example. `loss="ce"`: full softmax cross-entropy over all items;
`loss="bce"`: the SASRec paper's binary loss with one sampled negative per position.
`label_smoothing` (CE only) moves that share of each target's probability mass evenly onto all items.

Fitting with a validation part (`fit(train, valid)`, as on `leave-last-out`): early stopping
watches NDCG@10 on it; with `refit_valid`, the network is then retrained from scratch on the
training and validation rows together for the best epoch count (the trainer's own `refit` covers
only a carved holdout). With `valid_history` (default) the validation items extend the scoring
histories either way.

Real time: `partial_fit(events)` appends new events to the stored histories (a late event is
inserted in time order; a repeated (user, item) is a new occurrence, as a sequence sees it),
grows the item embeddings (new items start at the mean item embedding) and the user arrays
(new users start with an empty history), and the next `score` reads the extended history with
no gradient step. `finetune_steps` > 0 then runs that many Adam steps on the touched users'
windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstack.data.interactions import Interactions
from recstack.errors import DataError, RecstackError
from recstack.models.config import require
from recstack.models.torch_base import TorchConfig, TorchModel, positives, torch_settings


@dataclass(frozen=True)
class SequentialConfig(TorchConfig):
    """Settings shared by the sequential models: `factors` is the hidden size d.

    `valid_fraction` is unused: without a validation part, the holdout for early stopping is
    each user's last training item. `refit_valid`: with a validation part given to `fit` (and
    early stopping), retrain from scratch on the training and validation parts together for the
    best epoch count, so the validation items — each user's latest known step on
    `leave-last-out` — are learned from too. `finetune_steps`: Adam steps per `partial_fit` call.
    """

    factors: int = 64
    dropout: float = 0.2
    max_len: int = 50
    loss: Literal["ce", "bce"] = "ce"
    label_smoothing: float = 0.0  # CE loss: share of each target's probability spread evenly over all items
    valid_history: bool = True
    refit_valid: bool = False  # after early stopping, retrain on training + validation rows for the chosen epochs
    finetune_steps: int = 0
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    reg: float = 0.0
    patience: int = 3

    def check(self) -> None:
        super().check()
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        require(self.max_len >= 2, "max_len", self.max_len, "must be ≥ 2")
        require(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "must be in [0, 1)")
        require(self.finetune_steps >= 0, "finetune_steps", self.finetune_steps, "must be ≥ 0")


# ---- sequences ------------------------------------------------------------------------------------
def user_histories(parts: list[Interactions]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr (n_users+1,), items, timestamps): each user's history in (timestamp, part, row order)."""
    user = np.concatenate([p.user for p in parts]).astype(np.int64)
    item = np.concatenate([p.item for p in parts]).astype(np.int64)
    ts = np.concatenate([p.timestamp for p in parts]).astype(np.int64)
    order = np.lexsort((np.arange(len(user)), ts, user))
    counts = np.bincount(user, minlength=parts[0].n_users)
    return np.r_[0, np.cumsum(counts)].astype(np.int64), item[order], ts[order]


def user_sequences(parts: list[Interactions]) -> list[np.ndarray]:
    """Each user's item indices in (timestamp, part, row order); later parts count as later at ties."""
    indptr, items, _ = user_histories(parts)
    return np.split(items, indptr[1:-1])


def last_window(seqs: list[np.ndarray], max_len: int, shift: int = 1) -> np.ndarray:
    """(n_users, max_len) int64: the last `max_len` values + `shift`, left-padded with 0."""
    out = np.zeros((len(seqs), max_len), np.int64)
    for u, s in enumerate(seqs):
        tail = s[-max_len:]
        if len(tail):
            out[u, max_len - len(tail):] = tail + shift
    return out


def training_windows(seqs: list[np.ndarray], max_len: int,
                     times: list[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
    """Non-overlapping next-item windows cut from the end of each sequence.

    Returns (inputs, targets), each (n_windows, max_len) int64 of item index + 1 with 0 padding;
    targets[w, t] is the item that follows inputs[w, t]. With `times`, also the inputs' timestamps.
    """
    inputs, targets, stamps = [], [], []
    for n, s in enumerate(seqs):
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
            if times is not None:
                t = np.zeros(max_len, np.int64)
                t[max_len - len(chunk) + 1:] = times[n][start:end - 1]
                stamps.append(t)
            end = start + 1  # the next window's last target is this window's first input
    empty = np.zeros((0, max_len), np.int64)
    out = (np.stack(inputs), np.stack(targets)) if inputs else (empty, empty)
    if times is not None:
        out = (*out, np.stack(stamps) if stamps else empty)
    return out


def last_item_holdout(data: Interactions) -> tuple[Interactions, Interactions]:
    """Each user's last item in (timestamp, row order) → validation when the user has ≥ 2 rows."""
    order = np.lexsort((np.arange(len(data)), data.timestamp, data.user))
    u = data.user[order]
    is_last = np.r_[u[1:] != u[:-1], True]
    counts = np.bincount(data.user, minlength=data.n_users)
    valid = np.zeros(len(data), bool)
    valid[order[is_last & (counts[u] >= 2)]] = True
    return data.subset(~valid), data.subset(valid)


def length_batches(windows: torch.Tensor, batch_size: int, generator: torch.Generator,
                   pool: int = 32) -> Iterator[tuple[torch.Tensor, int]]:
    """Seeded mini-batches of row indices of left-padded (n, L) `windows` with similar lengths.

    A random permutation is cut into pools of `pool` batches; each pool is sorted by window
    length and cut into batches, and all batches are shuffled. Yields (rows, width): width is
    the longest real length in the batch, so `windows[rows, -width:]` drops only padding columns.
    The networks place positions from the right, so the cut changes no output.
    """
    lengths = (windows > 0).sum(1)
    perm = torch.randperm(len(windows), generator=generator)
    chunks = []
    for start in range(0, len(perm), batch_size * pool):
        part = perm[start:start + batch_size * pool]
        part = part[torch.sort(lengths[part], stable=True).indices]
        chunks.extend(part.split(batch_size))
    for k in torch.randperm(len(chunks), generator=generator).tolist():
        rows = chunks[k]
        yield rows, max(int(lengths[rows].max()), 1)


def with_rows(data: Interactions, more: Interactions) -> Interactions:
    """`data` with `more`'s rows appended (both share the vocabularies)."""
    return replace(data, user=np.r_[data.user, more.user], item=np.r_[data.item, more.item],
                   rating=np.r_[data.rating, more.rating], timestamp=np.r_[data.timestamp, more.timestamp],
                   meta=dict(data.meta))


def merge_histories(indptr: np.ndarray, items: np.ndarray, times: np.ndarray, n_users: int,
                    user: np.ndarray, item: np.ndarray, ts: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histories (CSR-like) grown to `n_users` with new events merged in time order.

    At equal timestamps the stored events come first, then new ones in their row order.
    """
    old_user = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    all_user = np.r_[old_user, user.astype(np.int64)]
    all_item = np.r_[items, item.astype(np.int64)]
    all_ts = np.r_[times, ts.astype(np.int64)]
    order = np.lexsort((np.arange(len(all_user)), all_ts, all_user))
    counts = np.bincount(all_user, minlength=n_users)
    return np.r_[0, np.cumsum(counts)].astype(np.int64), all_item[order], all_ts[order]


class SequentialModel(TorchModel):
    """Base of the next-item models: histories, windows, scoring from the last window, partial_fit.

    Subclass hooks: `build_network()` (a module with `item` (an `nn.Embedding` whose rows
    1..n_items are the items) and `item_weights()`), `encode(seq, times)` → (B, L, d) hidden
    states (default `network_(seq)`), and for another objective `make_windows`, `batches`,
    `batch_loss` and `score_users`. Time-aware models set `uses_time = True`.

    State: the network; `sequences_` (n_users, max_len) int64 scoring input; `time_sequences_`
    (n_users, max_len) int64 timestamps (time-aware models only); `seq_indptr_`, `seq_items_`,
    `seq_times_` every user's whole history.
    """

    config_class = SequentialConfig
    uses_time: ClassVar[bool] = False

    # ---- hooks -----------------------------------------------------------------------------------
    def encode(self, seq: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """(B, L, d) hidden states of left-padded item sequences (and their timestamps)."""
        return self.network_(seq)

    def make_windows(self, seqs: list[np.ndarray], times: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Training examples (arrays with one row per window) from whole sequences."""
        return training_windows(seqs, self.config.max_len, times if self.uses_time else None)

    def batches(self, windows: tuple[np.ndarray, ...], generator: torch.Generator,
                ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Shuffled mini-batches (x, y[, times][, negatives]) from `make_windows`' arrays, cut to
        their longest window (`length_batches`)."""
        tensors = [torch.from_numpy(a) for a in windows]
        for chunk, width in length_batches(tensors[0], self.config.batch_size, generator):
            batch = [t[chunk, -width:] for t in tensors]
            if self.config.loss == "bce":
                batch.append(torch.randint(1, self.n_items_ + 1, batch[1].shape, generator=generator))
            yield tuple(t.to(self.device) for t in batch)

    def train_batches(self, train: Interactions, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.batches(self._windows, generator)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        net = self.network_
        h = self.encode(x, batch[2] if self.uses_time else None)
        real = y > 0
        h = h[real]
        if self.config.loss == "ce":
            return F.cross_entropy(h @ net.item_weights().T, y[real] - 1,
                                   label_smoothing=self.config.label_smoothing)
        pos = (h * net.item(y[real])).sum(-1)
        neg = (h * net.item(batch[-1][real])).sum(-1)
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        seq, times = self._scoring_input()
        h = self.last_states(seq[users], None if times is None else times[users])
        return h @ self.network_.item_weights().T

    def last_states(self, seq: torch.Tensor, times: torch.Tensor | None, chunk: int = 128) -> torch.Tensor:
        """(B, d) last-position outputs of left-padded (B, L) sequences, encoded in groups of
        similar length cut to their longest (exact: the networks ignore leading padding)."""
        lengths = (seq > 0).sum(1)
        order = torch.argsort(lengths, stable=True)
        out = None
        for rows in order.split(chunk):
            width = max(int(lengths[rows].max()), 1)
            h = self.encode(seq[rows, -width:], None if times is None else times[rows, -width:])[:, -1]
            if out is None:
                out = h.new_empty((len(seq), h.shape[-1]))
            out[rows] = h
        if out is None:
            return torch.zeros((0, self.network_.item_weights().shape[1]), device=seq.device)
        return out

    # ---- sequences -------------------------------------------------------------------------------
    def _set_histories(self, indptr: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        self.seq_indptr_, self.seq_items_, self.seq_times_ = indptr, items, times
        self.sequences_ = last_window(np.split(items, indptr[1:-1]), self.config.max_len)
        if self.uses_time:
            self.time_sequences_ = last_window(np.split(times, indptr[1:-1]), self.config.max_len, 0)
        self._seq = None

    def _scoring_input(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(self, "_seq", None) is None:
            seq = torch.from_numpy(np.asarray(self.sequences_, np.int64)).to(self.device)
            times = None
            if self.uses_time:
                times = torch.from_numpy(np.asarray(self.time_sequences_, np.int64)).to(self.device)
            self._seq = (seq, times)
        return self._seq

    def setup(self, train: Interactions) -> None:
        indptr, items, times = user_histories([train])
        self._set_histories(indptr, items, times)
        self._windows = self.make_windows(np.split(items, indptr[1:-1]), np.split(times, indptr[1:-1]))

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
            if valid is not None and len(valid) and c.early_stopping and c.refit_valid:
                best, losses, ndcgs = self.best_epoch_, self.loss_history_, self.valid_ndcg_history_
                both = with_rows(full, positives(valid, c.min_rating))
                with torch_settings(c.threads, self.device):
                    self._train(both, None, best)
                self.network_.eval()
                self.best_epoch_, self.loss_history_, self.valid_ndcg_history_ = best, losses, ndcgs
        parts = [full]
        if valid is not None and c.valid_history:
            parts.append(positives(valid, c.min_rating))
        self._set_histories(*user_histories(parts))
        self._windows = None

    def set_state(self, arrays: Any, scalars: Any) -> None:
        self._seq = None
        super().set_state(arrays, scalars)

    # ---- real time -------------------------------------------------------------------------------
    def partial_fit(self, events: Interactions) -> Self:
        """Append `events` to the users' histories; the next `score` uses them (no gradient step).

        `events` shares the model's vocabularies, extended: its first `n_users_`/`n_items_`
        indices are the model's own, new users and items come after. A late event (older than
        the user's latest) is inserted in time order; a repeated (user, item) is a new
        occurrence. New items start at the mean item embedding, new users with an empty
        history. With `finetune_steps` > 0, that many Adam steps follow on the touched users'
        windows. Returns self.
        """
        if not self.fitted:
            raise RecstackError(f"{type(self).__name__} is not fitted; call fit() before partial_fit()")
        if events.n_users < self.n_users_ or events.n_items < self.n_items_:
            raise DataError(f"partial_fit: events know {events.n_users} users / {events.n_items} items, "
                            f"fewer than the model's {self.n_users_} / {self.n_items_}; "
                            "their vocabularies must extend the training ones")
        events = positives(events, self.config.min_rating)
        if events.n_items > self.n_items_:
            self._grow_items(events.n_items - self.n_items_)
        self.n_users_ = events.n_users
        self._set_histories(*merge_histories(self.seq_indptr_, self.seq_items_, self.seq_times_,
                                             events.n_users, events.user, events.item, events.timestamp))
        if self.config.finetune_steps and len(events):
            self._finetune(np.unique(events.user))
        return self

    def _grow_items(self, n_new: int) -> None:
        """Insert `n_new` item rows (the mean item embedding) after the current last item."""
        emb = self.network_.item
        w = emb.weight.detach()
        mean = w[1:self.n_items_ + 1].mean(0, keepdim=True).expand(n_new, -1)
        grown = torch.cat([w[:self.n_items_ + 1], mean, w[self.n_items_ + 1:]])
        new = nn.Embedding(grown.shape[0], grown.shape[1], padding_idx=emb.padding_idx).to(w.device)
        with torch.no_grad():
            new.weight.copy_(grown)
        self.network_.item = new
        self.n_items_ += n_new

    def _finetune(self, users: np.ndarray) -> None:
        """`finetune_steps` Adam steps on the windows of `users`' whole histories."""
        c = self.config
        indptr = self.seq_indptr_
        seqs = [self.seq_items_[indptr[u]:indptr[u + 1]] for u in users]
        times = [self.seq_times_[indptr[u]:indptr[u + 1]] for u in users]
        windows = self.make_windows(seqs, times)
        if not len(windows[0]):
            return
        generator = torch.Generator().manual_seed(c.seed + int(self.seq_indptr_[-1]))
        with torch_settings(c.threads, self.device):
            self.network_.train()
            optimizer = self.make_optimizer()
            steps = 0
            while steps < c.finetune_steps:
                for batch in self.batches(windows, generator):
                    optimizer.zero_grad(set_to_none=True)
                    self.batch_loss(batch).backward()
                    optimizer.step()
                    steps += 1
                    if steps >= c.finetune_steps:
                        break
            self.network_.eval()
        self._seq = None

    # ---- explanations (hints; see `recstack.models.seq_explain`) ---------------------------------
    def explain_input(self, seq: torch.Tensor, times: torch.Tensor | None,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's input for scoring left-padded (B, max_len) sequences (default: as they are)."""
        return seq, times

    def score_sequences(self, seq: np.ndarray, times: np.ndarray | None, item: int) -> np.ndarray:
        """(B,) scores of `item` after left-padded (B, max_len) item-index + 1 sequences, as `score` does."""
        net = self.network_
        was_training = net.training
        net.eval()
        try:
            with torch_settings(self.config.threads, self.device), torch.no_grad():
                s = torch.from_numpy(np.asarray(seq, np.int64)).to(self.device)
                t = None if times is None else torch.from_numpy(np.asarray(times, np.int64)).to(self.device)
                s, t = self.explain_input(s, t)
                h = self.last_states(s, t)
                return (h @ net.item_weights()[item]).float().cpu().numpy()
        finally:
            net.train(was_training)

    def explain(self, user: int, item: int, history: Any = None, method: str | None = None,
                last: int = 10) -> Any:
        """A hint (`Explanation` with exact=False) whose parts sum to the score of `item` for `user`.

        `method`: "rollout" (attention rollout, the default for attention models), "last" (the
        last layer's attention), "occlusion" (the score drop when each of the `last` latest items
        is removed; the default, and the only choice, for models without attention). `history`
        is ignored: the model reads the user's stored, time-ordered history."""
        from recstack.models.seq_explain import explain_hint

        return explain_hint(self, user, item, method, last)
