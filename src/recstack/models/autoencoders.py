"""Autoencoders over a user's interaction row: CDAE, Mult-VAE and Mult-DAE (torch, the [deep] extra).

- `CDAE` (name `cdae`): Collaborative Denoising Auto-Encoder (Wu, DuBois, Zheng & Ester, WSDM
  2016). Input: the user's 0/1 row with dropout corruption; one hidden layer plus a per-user
  node; sigmoid outputs trained with binary cross-entropy over all items.
- `MultVAE` (`multvae`): variational autoencoder with a multinomial likelihood (Liang, Krishnan,
  Hoffman & Jebara, WWW 2018). [n_items → hidden → factors] encoder (mean and log-variance),
  mirror decoder, tanh, dropout on the L2-normalised input, KL weight annealed linearly up to
  `anneal_cap` over `total_anneal_steps` optimizer steps.
- `MultDAE` (`multdae`): the same paper's denoising autoencoder: the same shape, no sampling, no KL.

All three score a user by passing their training row through the network (eval mode, no
dropout): `score(users)` → (len(users), n_items) logits. Training, early stopping on validation
NDCG@10, seeding and save/load come from `recstack.models.torch_base`.
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


class _RowModel(TorchModel):
    """Shared parts: a mini-batch is a shuffled chunk of users with at least one training item."""

    uses_history = True

    def train_batches(self, train: Interactions, generator: torch.Generator):
        active = torch.from_numpy(np.flatnonzero(np.bincount(train.user, minlength=train.n_users) > 0))
        for chunk in self.shuffled(len(active), generator):
            users = active[chunk].to(self.device)
            yield users, self.history_rows(users)


# ---- CDAE -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CDAEConfig(TorchConfig):
    """Hyperparameters of `cdae`: `factors` hidden units, `corruption` input dropout rate."""

    factors: int = 100
    corruption: float = 0.5  # dropout rate on the input rows (the denoising corruption)
    activation: Literal["sigmoid", "tanh", "relu", "identity"] = "sigmoid"  # activation of the hidden layer
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    reg: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(0 <= self.corruption < 1, "corruption", self.corruption, "must be in [0, 1)")


_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x}


class CDAENet(nn.Module):
    """h = act(W·ỹ_u + V_u + b); logits = W'·h + b'. In (B, n_items) rows + (B,) users, out (B, n_items)."""

    def __init__(self, n_users: int, n_items: int, factors: int, corruption: float, activation: str) -> None:
        super().__init__()
        self.encoder = nn.Linear(n_items, factors)
        self.user = nn.Embedding(n_users, factors)
        self.decoder = nn.Linear(factors, n_items)
        self.dropout = nn.Dropout(corruption)
        self.activation = activation
        nn.init.normal_(self.user.weight, 0.0, 0.01)

    def forward(self, rows: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        h = _ACTIVATIONS[self.activation](self.encoder(self.dropout(rows)) + self.user(users))
        return self.decoder(h)


class CDAE(_RowModel):
    """Collaborative Denoising Auto-Encoder (Wu et al. 2016) with BCE over all items."""

    name = "cdae"
    config_class = CDAEConfig

    def build_network(self) -> nn.Module:
        c = self.config
        return CDAENet(self.n_users_, self.n_items_, c.factors, c.corruption, c.activation)

    def batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        users, rows = batch
        logits = self.network_(rows, users)
        return F.binary_cross_entropy_with_logits(logits, rows, reduction="sum") / len(users)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.network_(self.history_rows(users), users)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [50, 100, 200, 400]),
            "corruption": trial.suggest_float("corruption", 0.0, 0.8),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "reg": trial.suggest_float("reg", 1e-7, 1e-3, log=True),
        }


# ---- Mult-VAE / Mult-DAE ------------------------------------------------------------------------
@dataclass(frozen=True)
class MultDAEConfig(TorchConfig):
    """Hyperparameters of `multdae`: layers [n_items → hidden → factors → hidden → n_items]."""

    hidden: int = 600  # units of the layer between the items and the factors (0: none)
    factors: int = 200
    dropout: float = 0.5
    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    reg: float = 0.0
    patience: int = 10

    def check(self) -> None:
        super().check()
        require(self.hidden >= 0, "hidden", self.hidden, "must be ≥ 0 (0: no hidden layer)")
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")


@dataclass(frozen=True)
class MultVAEConfig(MultDAEConfig):
    """Hyperparameters of `multvae`; β = min(anneal_cap, step / total_anneal_steps)."""

    anneal_cap: float = 0.2  # largest weight β of the KL term
    total_anneal_steps: int = 2000  # optimiser steps over which β rises to anneal_cap (0: at once)

    def check(self) -> None:
        super().check()
        require(self.anneal_cap >= 0, "anneal_cap", self.anneal_cap, "must be ≥ 0")
        require(self.total_anneal_steps >= 0, "total_anneal_steps", self.total_anneal_steps,
                "must be ≥ 0 (0: β = anneal_cap from the start)")


def _mlp(sizes: list[int]) -> nn.ModuleList:
    layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
    for layer in layers:  # Xavier weights, small normal biases, as in the paper's code
        nn.init.xavier_uniform_(layer.weight)
        nn.init.normal_(layer.bias, 0.0, 0.001)
    return layers


class MultNet(nn.Module):
    """Encoder [n_items → hidden → factors(·2 when variational)], decoder the mirror; tanh between.

    In (B, n_items) rows; out (logits (B, n_items), mu (B, factors), logvar (B, factors) or None).
    """

    def __init__(self, n_items: int, hidden: int, factors: int, dropout: float, variational: bool) -> None:
        super().__init__()
        mid = [hidden] if hidden else []
        self.variational = variational
        self.factors = factors
        self.encoder = _mlp([n_items, *mid, factors * (2 if variational else 1)])
        self.decoder = _mlp([factors, *mid, n_items])
        self.dropout = nn.Dropout(dropout)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.dropout(F.normalize(rows, dim=1))
        for k, layer in enumerate(self.encoder):
            h = layer(h)
            if k < len(self.encoder) - 1 or not self.variational:
                h = torch.tanh(h)
        mu, logvar = (h[:, :self.factors], h[:, self.factors:]) if self.variational else (h, None)
        z = mu
        if self.variational and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        for k, layer in enumerate(self.decoder):
            z = layer(z)
            if k < len(self.decoder) - 1:
                z = torch.tanh(z)
        return z, mu, logvar


class MultDAE(_RowModel):
    """Mult-DAE (Liang et al. 2018): denoising autoencoder with a multinomial log-likelihood."""

    name = "multdae"
    config_class = MultDAEConfig
    variational = False

    def build_network(self) -> nn.Module:
        c = self.config
        return MultNet(self.n_items_, c.hidden, c.factors, c.dropout, self.variational)

    def batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        _, rows = batch
        logits, mu, logvar = self.network_(rows)
        nll = -(F.log_softmax(logits, dim=1) * rows).sum(1).mean()
        if not self.variational:
            return nll
        c = self.config
        beta = c.anneal_cap if c.total_anneal_steps == 0 else min(c.anneal_cap, self.step / c.total_anneal_steps)
        kl = (0.5 * (-logvar + torch.exp(logvar) + mu * mu - 1.0).sum(1)).mean()
        return nll + beta * kl

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.network_(self.history_rows(users))[0]

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "hidden": trial.suggest_categorical("hidden", [0, 200, 600]),
            "factors": trial.suggest_categorical("factors", [50, 100, 200]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.8),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "reg": trial.suggest_float("reg", 1e-7, 1e-3, log=True),
        }


class MultVAE(MultDAE):
    """Mult-VAE (Liang et al. 2018): multinomial likelihood, Gaussian latent, annealed KL weight."""

    name = "multvae"
    config_class = MultVAEConfig
    variational = True

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        space = super().search_space(trial)
        space["anneal_cap"] = trial.suggest_float("anneal_cap", 0.0, 1.0)
        space["total_anneal_steps"] = trial.suggest_categorical("total_anneal_steps", [200, 1000, 5000])
        return space
