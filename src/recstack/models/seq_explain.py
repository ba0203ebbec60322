"""Explanation hints for the next-item models (`sasrec`, `tisasrec`, `bert4rec`, `gru4rec`).

A sequence model's score is no sum over history items, so what these give is a *hint*
(`Explanation.exact` is False), scaled so that its parts still sum to the score:

- `attention` (transformers): the attention the model pays to each position of the user's
  window when it forms the query position's output — the last history item for `sasrec` and
  `tisasrec`, the appended [mask] slot for `bert4rec`. `method="rollout"` (default) follows
  Abnar & Zuidema (ACL 2020): each layer's head-averaged attention A_l is mixed with the
  residual path, Â_l = ½·A_l + ½·I (rows renormalised), and the layers are multiplied,
  R = Â_L ⋯ Â_1; the query's row of R weighs the positions. `method="last"` reads the last
  layer's head-averaged row alone. Weights on positions that are no history item (bert4rec's
  [mask] slot) are dropped and the rest renormalised; a repeated item gets the sum of its
  positions' weights. Part j = score · w_j.
- `occlusion` (any sequence model; the only one for `gru4rec`, which has no attention): the
  score drop d_j when history item j is removed (the model then reads the rest of the history,
  an older item entering the window), for each of the last `last` items. When Σ d_j has the
  score's sign, part j = d_j · score / Σ d_j (the drops' proportions, summing to the score);
  otherwise the parts are the raw drops and a `rest` part holds score − Σ d_j.

The attention maps are read with forward hooks, so the networks stay as they are: every
`nn.MultiheadAttention` (asked for per-head weights), and for `tisasrec`'s own blocks (a module
with `q`, `heads` and a `drop` dropout) the softmax output, which passes through `drop` first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from recstack.errors import ConfigError, RecstackError
from recstack.models.base import Explanation, item_parts
from recstack.models.torch_base import torch_settings

if TYPE_CHECKING:
    from recstack.models.sequential import SequentialModel

METHODS = ("rollout", "last", "occlusion")


def explain_hint(model: SequentialModel, user: int, item: int, method: str | None = None,
                 last: int = 10) -> Explanation:
    """`SequentialModel.explain`: the hint by `method` (None: "rollout" where the network has
    attention, else "occlusion")."""
    if not model.fitted:
        raise RecstackError(f"{type(model).__name__} is not fitted; call fit() first")
    if not (0 <= user < model.n_users_ and 0 <= item < model.n_items_):
        raise RecstackError(f"explain: user index {user} or item index {item} is out of range")
    if method is None:
        method = "rollout" if has_attention(model.network_) else "occlusion"
    if method not in METHODS:
        raise ConfigError(f"explain method {method!r}: known {', '.join(METHODS)}")
    if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 1:
        raise ConfigError(f"explain last={last!r}: must be an integer ≥ 1")
    with torch_settings(model.config.threads, model.device):
        if method == "occlusion":
            return occlusion_hint(model, user, item, int(last))
        return attention_hint(model, user, item, method)


def _is_time_block(m: nn.Module) -> bool:
    return hasattr(m, "q") and hasattr(m, "heads") and isinstance(getattr(m, "drop", None), nn.Dropout)


def has_attention(network: nn.Module) -> bool:
    """Whether `attention_maps` can read attention from `network`."""
    return any(isinstance(m, nn.MultiheadAttention) or _is_time_block(m) for m in network.modules())


def _ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


def attention_maps(network: nn.Module, run: Any) -> list[torch.Tensor]:
    """Per attention layer, in forward order, the (B, H, L, L) weights seen while `run()` runs
    the network (with gradients on, so torch takes its plain path that can return them)."""
    maps: list[torch.Tensor] = []

    def keep(module: nn.Module, args: Any, out: Any) -> None:
        att = out[1] if isinstance(out, tuple) else out
        if att is not None and att.dim() == 4:
            maps.append(att.detach())

    handles = []
    for m in network.modules():
        if isinstance(m, nn.MultiheadAttention):
            handles.append(m.register_forward_pre_hook(_ask_for_weights, with_kwargs=True))
            handles.append(m.register_forward_hook(keep))
        elif _is_time_block(m):
            handles.append(m.drop.register_forward_hook(keep))  # tisasrec: softmax → drop (4-d only)
    try:
        with torch.enable_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return maps


def query_weights(maps: list[torch.Tensor], method: str = "rollout") -> np.ndarray:
    """(L,) weights of the positions for the last (query) position, from one sequence's maps."""
    layers = [m[0].mean(0).double() for m in maps]  # heads averaged: (L, L) each
    if method == "last":
        return layers[-1][-1].cpu().numpy()
    eye = torch.eye(layers[0].shape[0], dtype=torch.float64, device=layers[0].device)
    rolled = eye
    for a in layers:
        mixed = 0.5 * a + 0.5 * eye
        rolled = (mixed / mixed.sum(-1, keepdim=True)) @ rolled
    return rolled[-1].cpu().numpy()


def _per_item(items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys, inverse = np.unique(items, return_inverse=True)
    return keys, np.bincount(inverse, weights=weights, minlength=len(keys))


def attention_hint(model: SequentialModel, user: int, item: int, method: str = "rollout") -> Explanation:
    """The attention hint for (user, item): parts score · w_j over the user's window items."""
    score = float(model.score([user], [item])[0, 0])
    seq, times = model._scoring_input()
    seq, times = seq[user:user + 1], None if times is None else times[user:user + 1]
    seq, times = model.explain_input(seq, times)
    width = max(int((seq > 0).sum()), 1)
    seq = seq[:, -width:]
    times = None if times is None else times[:, -width:]
    net = model.network_
    was_training = net.training
    net.eval()
    try:
        maps = attention_maps(net, lambda: model.encode(seq, times))
    finally:
        net.train(was_training)
    if not maps:
        raise ConfigError(f"model {model.name!r} has no attention layers; use method='occlusion'")
    w = query_weights(maps, method)
    tokens = seq[0].cpu().numpy()
    history = (tokens > 0) & (tokens <= model.n_items_)
    return _scaled(score, tokens[history] - 1, w[history], method)


def _hint(items: np.ndarray, contributions: np.ndarray, rest: float, method: str) -> Explanation:
    e = item_parts(items, contributions, rest=rest, exact=False)
    for p in e.parts:
        if p["kind"] == "rest":
            p["key"] = "the rest of the history and the model itself"
    e.method = method
    return e


def _scaled(score: float, items: np.ndarray, weights: np.ndarray, method: str) -> Explanation:
    total = weights.sum()
    if not len(items) or total <= 0:
        return _hint(np.zeros(0, np.int64), np.zeros(0), score, f"attention ({method})")
    keys, w = _per_item(items, weights / total)
    return _hint(keys, score * w, 0.0, f"attention ({method})")


def occlusion_hint(model: SequentialModel, user: int, item: int, last: int = 10) -> Explanation:
    """The occlusion hint for (user, item) over the user's last `last` history items."""
    score = float(model.score([user], [item])[0, 0])
    lo, hi = int(model.seq_indptr_[user]), int(model.seq_indptr_[user + 1])
    items, stamps = model.seq_items_[lo:hi], model.seq_times_[lo:hi]
    positions = np.arange(max(len(items) - last, 0), len(items))
    if not len(positions):
        return _hint(np.zeros(0, np.int64), np.zeros(0), score, "occlusion")
    from recstack.models.sequential import last_window

    max_len = model.config.max_len
    seq = last_window([np.delete(items, j) for j in positions], max_len)
    times = last_window([np.delete(stamps, j) for j in positions], max_len, 0) if model.uses_time else None
    without = model.score_sequences(seq, times, item)
    drops = score - without.astype(np.float64)
    keys, d = _per_item(items[positions], drops)
    total = d.sum()
    if total != 0 and np.sign(total) == np.sign(score):
        return _hint(keys, d * (score / total), 0.0, "occlusion")
    return _hint(keys, d, score - total, "occlusion")
