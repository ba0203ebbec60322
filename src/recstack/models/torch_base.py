"""The one shared PyTorch trainer: every torch model (NCF, autoencoders, LightGCN, SASRec) uses it.

A torch model subclasses `TorchModel`, declares a config deriving `TorchConfig`, and implements
four small hooks; fitting, early stopping, scoring, seeding, devices, threads and persistence
come from here:

    build_network(self) -> nn.Module
        The network, from `self.config`, `self.n_users_`, `self.n_items_` (and any scalar state
        the model set in `setup`). Called again on load, so its shape may depend on nothing else.
    train_batches(self, train, generator) -> Iterable[batch]
        One epoch of mini-batches over the training part (`Interactions`, positives only).
        Draw every random number (shuffles, negatives) from `generator` (a CPU
        `torch.Generator`); put tensors on `self.device`.
    batch_loss(self, batch) -> Tensor
        Scalar loss of one batch, network in train mode. `self.step` counts optimizer steps
        since the start of training (for schedules such as KL annealing).
    score_users(self, users) -> Tensor
        (len(users), n_items) scores for a LongTensor of user indices on `self.device`, as
        matrix work (never a loop over items). Called in eval mode under `torch.no_grad()`.

Optional hooks: `setup(train)` (once per training run, before `build_network`: precompute
tensors or scalar state), `init_network(train, valid)` (after `build_network`, e.g. NeuMF's
pretraining), `make_optimizer()` (default fused Adam with `weight_decay=reg`). A model whose scoring
input is the user's history sets `uses_history = True`; `history_rows(users)` then gives dense
(B, n_items) 0/1 rows of the training matrix (the full training part after fitting, the carved
training part while validating), saved with the model.

Training never reads or changes torch's global random state: shuffles and negatives come from
one `torch.Generator(seed)` passed to `train_batches`, and the draws torch's own modules make
from the global generator (weight init in `build_network`, `nn.Dropout`, the dropout inside
`nn.TransformerEncoderLayer`, Mult-VAE's reparameterisation noise — none of which take a
generator argument) happen inside `torch.random.fork_rng`, whose stream is set from the seed on
entry and the caller's restored on exit. So the same seed gives the same numbers on the CPU
(deterministic algorithms on CUDA) whatever the caller drew before, and the caller's stream
does not move. Interactions with rating < `min_rating`
are dropped first (0 keeps all). Each epoch's learning rate is the previous one × `lr_decay`
(1: constant; per-epoch history in `lr_history_`). Early stopping watches NDCG@10 on a validation part: the one
given to `fit(train, valid)`, else a per-user random holdout of `valid_fraction` of each user's
training items (`per_user_holdout`), ranked with the project's own `recommend` and `metrics`;
after `patience` epochs without improvement the best epoch's weights are restored. `refit=True`
(the default) then retrains from scratch on the whole training part for the best number of
epochs, so the carved rows are learned from too. A validation part given to `fit` is not training
data (leave-last-out's second-to-last items): the model trained on all of `train` already, so
there is no refit; the best epoch on `valid` is kept.

State: learned arrays and scalars (attributes ending in `_`) as usual, the network's state dict
as numpy arrays named `network.<param>` in `arrays.npz`; loading rebuilds the network and loads
them, so no pickle is ever read. `threads` = 0 uses min(2, cpu count) torch threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp
import torch

from recstack import metrics as M
from recstack.data.interactions import Interactions
from recstack.distributed import ddp
from recstack.errors import ConfigError, DataError, RecstackError
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.progress import Bar

log = logging.getLogger(__name__)

NETWORK_PREFIX = "network."


@dataclass(frozen=True)
class TorchConfig(Config):
    """Training settings shared by every torch model; model configs derive from it."""

    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_decay: float = 1.0  # each epoch's learning rate is the previous one × lr_decay
    reg: float = 0.0  # Adam weight decay
    early_stopping: bool = True
    patience: int = 5
    valid_fraction: float = 0.1
    refit: bool = True  # after early stopping on a carve: retrain on all of train for the best epoch count
    min_rating: float = 0.0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    engine: Literal["local", "ddp", "spark"] = "local"  # ddp / spark: data-parallel (distributed/ddp.py)
    processes: int = 2  # data-parallel processes; each takes batch_size / processes rows of a batch

    def check(self) -> None:
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be ≥ 1")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        require(0 < self.lr_decay <= 1, "lr_decay", self.lr_decay, "must be in (0, 1]")
        require(self.reg >= 0, "reg", self.reg, "must be ≥ 0")
        require(self.patience >= 1, "patience", self.patience, "must be ≥ 1")
        require(0 < self.valid_fraction < 1, "valid_fraction", self.valid_fraction, "must be in (0, 1)")
        require(self.threads >= 0, "threads", self.threads, "must be ≥ 0 (0: min(2, cpu count))")
        require(self.processes >= 1, "processes", self.processes, "must be ≥ 1")


def resolve_device(name: str, loading: bool = False) -> torch.device:
    """"auto" → cuda when available, else cpu; "cuda" without a GPU is a `ConfigError` when
    training, and cpu (with a log line) when `loading` a saved model."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        if loading:
            log.info("model trained with device='cuda' loads on the CPU (no CUDA device here)")
            return torch.device("cpu")
        raise ConfigError("parameter device='cuda': no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


@numba.njit(cache=True, parallel=True)
def _numba_pool_probe(n):  # pragma: no cover - numba
    total = 0
    for i in numba.prange(n):
        total += i
    return total


@functools.cache
def start_numba_pool() -> None:
    """Start numba's thread pool (once per process) before torch's thread count is set.

    With numba's OpenMP threading layer, the first parallel region of the process sets the
    OpenMP thread count — which torch shares — to numba's. Started in the middle of a fit (the
    first validation's top-k), it silently raised a `threads: 1` fit to 2 threads for the rest
    of that fit: on 2 busy cores each epoch then took several times as long."""
    _numba_pool_probe(2)


@contextlib.contextmanager
def torch_settings(threads: int, device: torch.device | None = None) -> Iterator[None]:
    """Torch thread count (0: min(2, cpu count)), restored on exit (numba's pool started first:
    `start_numba_pool`).

    On CUDA, deterministic algorithms are switched on (warn-only) for the duration; CPU kernels
    used here are deterministic already (and switching the flag imports torch._inductor, ~3 s).
    """
    start_numba_pool()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or min(2, os.cpu_count() or 1))
    cuda = device is not None and device.type == "cuda"
    if cuda:
        old_det = torch.are_deterministic_algorithms_enabled()
        old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        if cuda:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def positives(data: Interactions, min_rating: float) -> Interactions:
    """Rows with rating ≥ `min_rating` (all rows when `min_rating` ≤ 0)."""
    return data if min_rating <= 0 else data.subset(data.rating >= min_rating)


def per_user_holdout(data: Interactions, fraction: float = 0.1,
                     seed: int = 0) -> tuple[Interactions, Interactions]:
    """Per user, a random `round(fraction · count)` of the rows → validation, the rest → train.

    Every user keeps at least one training row (a user with one row keeps it). Deterministic in
    `seed`. Returns (train, valid) sharing `data`'s vocabularies.
    """
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(data)), data.user))
    counts = np.bincount(data.user, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - starts[data.user[order]]  # 0-based rank within the user
    n_valid = np.minimum(np.round(fraction * counts), np.maximum(counts - 1, 0)).astype(np.int64)
    valid = np.zeros(len(data), bool)
    valid[order] = rank < n_valid[data.user[order]]
    return data.subset(~valid), data.subset(valid)


def ranking_ndcg(model: Model, train: Interactions, valid: Interactions, k: int = 10) -> float:
    """NDCG@k of `model` on `valid`, `train`'s items excluded, for users in both parts."""
    users = np.intersect1d(np.unique(train.user), np.unique(valid.user))
    if not len(users):
        return 0.0
    from recstack.recommend import recommend

    rec, _ = recommend(model, users, k, exclude=train.csr)
    hits, n_rel = M.hit_matrix(rec, valid.csr[users])
    return M.ndcg_at_k(hits, n_rel, k)


class TorchModel(Model):
    """Base of the torch models: the shared trainer, batched scoring and array persistence.

    State: `network_` (the torch module, saved as `network.*` arrays), `epochs_`, `best_epoch_`,
    `loss_history_` (epochs,), `valid_ndcg_history_` (epochs,) and, with `uses_history`,
    `history_indptr_` / `history_indices_` (the binary training matrix as CSR arrays).
    """

    config_class: ClassVar[type[Config]] = TorchConfig
    supports_gpu: ClassVar[bool] = True
    uses_history: ClassVar[bool] = False
    score_batch_users: ClassVar[int] = 1024  # users scored per forward pass

    step: int = 0

    # ---- hooks (see the module docstring) ------------------------------------------------------
    def setup(self, train: Interactions) -> None:
        """Once per training run, before `build_network`; default nothing."""

    def build_network(self) -> torch.nn.Module:
        raise NotImplementedError

    def init_network(self, train: Interactions, valid: Interactions | None) -> None:
        """After `build_network`, before the first epoch; default nothing."""

    def train_batches(self, train: Interactions, generator: torch.Generator) -> Iterable[Any]:
        raise NotImplementedError

    def batch_loss(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.network_.parameters() if p.requires_grad]
        fused = all(p.dtype in (torch.float16, torch.float32, torch.float64) for p in params)
        return torch.optim.Adam(params, lr=c.learning_rate, weight_decay=c.reg, fused=fused or None)

    # ---- helpers for subclasses ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if getattr(self, "_device", None) is None:
            self._device = resolve_device(self.config.device)
        return self._device

    def shuffled(self, n: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """A seeded permutation of range(n) in `batch_size` chunks (CPU LongTensors)."""
        perm = torch.randperm(n, generator=generator)
        yield from perm.split(self.config.batch_size)

    def set_history(self, data: Interactions) -> None:
        """Use `data`'s (binary) user × item matrix as the scoring input of `history_rows`."""
        m = sp.csr_matrix((np.ones(len(data), np.float32), (data.user, data.item)),
                          shape=(data.n_users, data.n_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        self.history_indptr_ = m.indptr.astype(np.int64)
        self.history_indices_ = m.indices.astype(np.int32)
        self._history = m

    def history_matrix(self) -> sp.csr_matrix:
        """The binary (n_users, n_items) history matrix (float32 CSR)."""
        if getattr(self, "_history", None) is None:
            data = np.ones(len(self.history_indices_), np.float32)
            self._history = sp.csr_matrix((data, self.history_indices_, self.history_indptr_),
                                          shape=(self.n_users_, self.n_items_))
        return self._history

    def history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) float32 0/1 rows of the history matrix on `self.device`."""
        rows = self.history_matrix()[users.cpu().numpy()].toarray()
        return torch.from_numpy(rows).to(self.device)

    # ---- training ------------------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        self._device = None
        self._history = None
        if c.engine != "local":  # data-parallel: the same fit in several processes (distributed/ddp.py)
            ddp.fit_distributed(self, train, valid)
            return
        full = positives(train, c.min_rating)
        if len(full) == 0:
            raise RecstackError(f"no training interactions with rating ≥ min_rating={c.min_rating}")
        if valid is not None:
            valid = positives(valid, c.min_rating)
        part, carved = full, False
        if valid is None and c.early_stopping:
            part, valid = per_user_holdout(full, c.valid_fraction, c.seed)
            carved = True
        with torch_settings(c.threads, self.device):
            self._train(part, valid, c.epochs)
            if c.refit and carved:
                best, losses, ndcgs = self.best_epoch_, self.loss_history_, self.valid_ndcg_history_
                self._train(full, None, best)
                self.best_epoch_ = best
                self.loss_history_, self.valid_ndcg_history_ = losses, ndcgs
        if self.uses_history:
            self.set_history(full)
        self.network_.eval()

    def _train(self, train: Interactions, valid: Interactions | None, epochs: int) -> None:
        """Seeded mini-batch Adam for up to `epochs`, early stopping on validation NDCG@10."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)  # the forked stream: module init, dropout, VAE noise
            self._train_seeded(train, valid, epochs, torch.Generator().manual_seed(self.config.seed))

    def _train_seeded(self, train: Interactions, valid: Interactions | None, epochs: int,
                      generator: torch.Generator) -> None:
        c = self.config
        if self.uses_history:
            self.set_history(train)
        self.setup(train)
        self.network_ = self.build_network().to(self.device)
        self.init_network(train, valid)
        self.network_ = ddp.wrap(self.network_)  # inside a process group only
        optimizer = self.make_optimizer()
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step = 0
        watch = valid is not None and len(valid) > 0
        best_ndcg, best_epoch, best_state = -np.inf, 0, None
        losses: list[float] = []
        ndcgs: list[float] = []
        lrs: list[float] = []
        bar = Bar(f"{self.name} epochs", total=epochs)
        epoch = 0
        for epoch in range(1, epochs + 1):
            for group, lr in zip(optimizer.param_groups, base_lrs):  # exponential decay per epoch
                group["lr"] = lr * c.lr_decay ** (epoch - 1)
            lrs.append(optimizer.param_groups[0]["lr"])
            self.network_.train()
            total, batches = 0.0, 0
            for batch in ddp.shard(self.train_batches(train, generator)):
                optimizer.zero_grad(set_to_none=True)
                loss = self.batch_loss(batch)
                loss.backward()
                optimizer.step()
                self.step += 1
                total += float(loss.detach())
                batches += 1
            losses.append(total / max(batches, 1))
            if not np.isfinite(losses[-1]):
                bar.close()
                raise RecstackError(f"{self.name}: training loss became {losses[-1]} at epoch {epoch} "
                                    f"(try a smaller learning_rate)")
            if not watch:
                bar.update(loss=losses[-1])
                continue
            ndcgs.append(ranking_ndcg(self, train, valid))
            bar.update(loss=losses[-1], valid_ndcg=ndcgs[-1])
            if ndcgs[-1] > best_ndcg:
                best_ndcg, best_epoch = ndcgs[-1], epoch
                best_state = {k: v.detach().clone() for k, v in self.network_.state_dict().items()}
            elif c.early_stopping and epoch - best_epoch >= c.patience:
                break
        bar.close()
        self.network_ = ddp.unwrap(self.network_)
        self.epochs_ = epoch
        if c.early_stopping and best_state is not None:
            self.network_.load_state_dict(best_state)
            self.best_epoch_ = best_epoch
        else:
            self.best_epoch_ = epoch
        self.loss_history_ = np.asarray(losses, np.float64)
        self.lr_history_ = np.asarray(lrs, np.float64)
        self.valid_ndcg_history_ = np.asarray(ndcgs, np.float64)

    # ---- scoring -------------------------------------------------------------------------------
    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        net = self.network_
        was_training = net.training
        net.eval()
        cols = None if items is None else torch.as_tensor(items, dtype=torch.long, device=self.device)
        out = []
        try:
            with torch_settings(self.config.threads, self.device), torch.no_grad():
                for start in range(0, len(users), self.score_batch_users):
                    u = torch.as_tensor(users[start:start + self.score_batch_users], dtype=torch.long,
                                        device=self.device)
                    s = self.score_users(u)
                    if cols is not None:
                        s = s[:, cols]
                    out.append(s.float().cpu().numpy())
        finally:
            net.train(was_training)
        width = self.n_items_ if items is None else len(items)
        return np.vstack(out) if out else np.empty((0, width), np.float32)

    # ---- persistence ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and scalars as in `Model`, plus the network's state dict as `network.*` arrays."""
        net = self.__dict__.pop("network_", None)
        try:
            arrays, scalars = super().get_state()
        finally:
            if net is not None:
                self.network_ = net
        if net is not None:
            for key, value in net.state_dict().items():
                arrays[NETWORK_PREFIX + key] = value.detach().cpu().numpy()
        return arrays, scalars

    def set_state(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        """Restore arrays and scalars, rebuild the network and load its `network.*` tensors."""
        weights = {k[len(NETWORK_PREFIX):]: v for k, v in arrays.items() if k.startswith(NETWORK_PREFIX)}
        rest = {k: v for k, v in arrays.items() if not k.startswith(NETWORK_PREFIX)}
        super().set_state(rest, scalars)
        self._device = resolve_device(self.config.device, loading=True)
        self._history = None
        if not weights:
            return
        net = self.build_network()
        try:
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)
        except RuntimeError as exc:
            raise DataError(f"saved network does not fit {type(self).__name__}: {exc}") from None
        self.network_ = net.to(self.device).eval()
