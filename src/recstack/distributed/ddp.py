"""Data-parallel training of any torch model with PyTorch DistributedDataParallel (gloo, CPU).

`--param engine=ddp --param processes=P` makes the shared trainer (`models/torch_base.py`) run
in P processes on this machine; `fit_on_spark` runs the very same function on a Spark cluster
through `pyspark.ml.torch.distributor.TorchDistributor`. How it stays one training run:

- every process draws the same global mini-batches (the same seeded `torch.Generator`), and
  process r keeps slice r of each (`shard`): `batch_size` stays the global batch, each process
  takes batch_size / P rows;
- the network is wrapped in `DistributedDataParallel` (`wrap`), which averages gradients over
  the processes during `backward`, so every process takes the same Adam step: the mean of the
  shard losses' gradients is the gradient of the global batch's mean loss (equal shards);
- validation NDCG, early stopping and the learning-rate schedule run identically everywhere;
  rank 0 writes the learned state (arrays as `.npz`, scalars as JSON — no pickle) and the
  calling process loads it with `set_state`, as if from a model folder.

Data reaches the workers as `.npz` files of the training (and validation) interactions; the
model travels as its registry name and JSON config.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _DDP(DistributedDataParallel):
    """DDP whose unknown attributes (e.g. `net.item.weight`, `net.item_weights()`) and state dict
    are the wrapped module's, so model code written for the plain network runs unchanged."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def state_dict(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return self.module.load_state_dict(*args, **kwargs)


def wrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network in DDP inside a process group; unchanged otherwise. Start weights are rank 0's."""
    if not active() or isinstance(network, DistributedDataParallel):
        return network
    return _DDP(network)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module of a `wrap`ped network."""
    return network.module if isinstance(network, DistributedDataParallel) else network


def _slice(value: Any, n: int, rank: int, world: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n:
        return value.tensor_split(world)[rank]
    if isinstance(value, tuple):
        return tuple(_slice(v, n, rank, world) for v in value)
    if isinstance(value, list):
        return [_slice(v, n, rank, world) for v in value]
    if isinstance(value, dict):
        return {k: _slice(v, n, rank, world) for k, v in value.items()}
    return value


def _rows(value: Any) -> int | None:
    """The batch's row count: the first dimension of its first tensor."""
    if isinstance(value, torch.Tensor):
        return value.shape[0] if value.dim() else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    for v in items:
        n = _rows(v)
        if n is not None:
            return n
    return None


def shard(batches: Iterable[Any]) -> Iterator[Any]:
    """This process's slice of every global batch: tensors whose first dimension is the batch's
    row count are split into world-size near-equal parts (`tensor_split`); the rest pass as is."""
    if not active():
        yield from batches
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    for batch in batches:
        n = _rows(batch)
        yield batch if n is None else _slice(batch, n, rank, world)


# ---- launching -------------------------------------------------------------------------------
def _save_interactions(data: Interactions, path: Path) -> None:
    np.savez(path, user=data.user, item=data.item, rating=data.rating, timestamp=data.timestamp,
             user_ids=data.user_ids, item_ids=data.item_ids)


def _load_interactions(path: Path) -> Interactions:
    with np.load(path, allow_pickle=False) as z:
        return Interactions(z["user_ids"], z["item_ids"], z["user"], z["item"], z["rating"], z["timestamp"])


def train_worker(rank: int, world: int, folder: str, port: int | None = None) -> None:
    """One process of a data-parallel run: join the gloo group, fit, rank 0 writes the state.

    `port` None: the process group comes from the environment (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT — torchrun, TorchDistributor). Reads `folder/job.json`, `train.npz`, `valid.npz`.
    """
    from recstack.models.base import get_model_class

    root = Path(folder)
    job = json.loads((root / "job.json").read_text())
    if port is None:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        train = _load_interactions(root / "train.npz")
        valid = _load_interactions(root / "valid.npz") if (root / "valid.npz").exists() else None
        model = get_model_class(job["model"])(job["config"])
        model.fit(train, valid)
        if rank == 0:
            arrays, scalars = model.get_state()
            np.savez(root / "state.npz", **arrays)
            (root / "state.json").write_text(json.dumps(scalars, default=float))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(model: Any, train: Interactions, valid: Interactions | None, folder: Path) -> None:
    c = model.config
    processes = c.processes
    threads = max(1, (c.threads or min(2, os.cpu_count() or 1)) // processes)
    config = {**c.to_dict(), "engine": "local", "threads": threads}
    (folder / "job.json").write_text(json.dumps({"model": model.name, "config": config}))
    _save_interactions(train, folder / "train.npz")
    if valid is not None:
        _save_interactions(valid, folder / "valid.npz")


def _collect(model: Any, folder: Path) -> None:
    if not (folder / "state.npz").exists():
        raise RecstackError("distributed training ended without a result from rank 0")
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    model.set_state(arrays, json.loads((folder / "state.json").read_text()))


def fit_processes(model: Any, train: Interactions, valid: Interactions | None) -> None:
    """Fit `model` (a TorchModel with engine="ddp") in `config.processes` local processes."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="recstack-ddp-") as tmp:
        folder = Path(tmp)
        _prepare(model, train, valid, folder)
        world = model.config.processes
        mp.spawn(train_worker, args=(world, tmp, _free_port()), nprocs=world, join=True)
        _collect(model, folder)


def fit_on_spark(model: Any, train: Interactions, valid: Interactions | None, spark=None,
                 local_mode: bool = True) -> None:
    """Fit `model` through Spark's TorchDistributor: `config.processes` processes, `train_worker`
    in each (local_mode: on the driver machine; else on the executors, `folder` must be shared)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    with tempfile.TemporaryDirectory(prefix="recstack-ddp-") as tmp:
        folder = Path(tmp)
        _prepare(model, train, valid, folder)
        TorchDistributor(num_processes=model.config.processes, local_mode=local_mode,
                         use_gpu=False).run(train_worker, 0, 0, tmp, None)
        _collect(model, folder)


def fit_distributed(model: Any, train: Interactions, valid: Interactions | None) -> None:
    """`engine="ddp"`: local processes; `engine="spark"`: Spark's TorchDistributor (local mode)."""
    if model.config.engine == "spark":
        fit_on_spark(model, train, valid)
    else:
        fit_processes(model, train, valid)
