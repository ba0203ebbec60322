"""Baseline estimates: global mean plus regularised user and item biases.

r̂(u, i) = μ + b_u + b_i (Koren 2010, "Factor in the neighbors", section 2.1). Two ways to fit,
as in Surprise's `BaselineOnly`:

- `method="als"`: alternating closed-form updates, items first,
  b_i = Σ_{u∈U(i)} (r_ui - μ - b_u) / (reg_i + |U(i)|), then
  b_u = Σ_{i∈I(u)} (r_ui - μ - b_i) / (reg_u + |I(u)|). Vectorised with `np.bincount`.
- `method="sgd"`: stochastic gradient descent on the regularised squared error; the epoch is
  `mf.sgd_epoch` with zero factors (the same biased update as `biased-mf`), so it shares its
  numba kernel and slow twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recstack.data.interactions import Interactions
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.models.mf import sgd_epoch


def als_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
               mu: float, epochs: int, reg_u: float, reg_i: float) -> tuple[np.ndarray, np.ndarray]:
    """Alternating closed-form bias updates (Surprise's baseline ALS).

    users, items: (n,) indices; ratings: (n,) float. Returns (b_u (n_users,), b_i (n_items,)) float64.
    """
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    for _ in range(epochs):
        bi = np.bincount(items, ratings - mu - bu[users], minlength=n_items) / (reg_i + n_i)
        bu = np.bincount(users, ratings - mu - bi[items], minlength=n_users) / (reg_u + n_u)
    return bu, bi


def als_biases_slow(users, items, ratings, n_users, n_items, mu, epochs, reg_u, reg_i):
    """Plain loop twin of `als_biases` (one sum per item, then one per user)."""
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    for _ in range(epochs):
        for i in range(n_items):
            rows = items == i
            bi[i] = np.sum(ratings[rows] - mu - bu[users[rows]]) / (reg_i + rows.sum())
        for u in range(n_users):
            rows = users == u
            bu[u] = np.sum(ratings[rows] - mu - bi[items[rows]]) / (reg_u + rows.sum())
    return bu, bi


@dataclass(frozen=True)
class BaselineConfig(Config):
    """Hyperparameters of `baseline`.

    ALS defaults were chosen on a 90/10 validation split of ML-100K u1's training part (Surprise
    uses reg_u 15, reg_i 10, 10 epochs); SGD defaults are Surprise's.
    """

    method: Literal["als", "sgd"] = "als"  # als: alternating closed-form bias updates; sgd: SGD
    epochs: int = 25
    reg_u: float = 5.0  # ALS: λ added to each user's rating count in b_u
    reg_i: float = 3.0  # ALS: λ added to each item's rating count in b_i
    learning_rate: float = 0.005  # SGD: step size
    reg: float = 0.02  # SGD: L2 regularisation of the biases
    seed: int = 0

    def check(self) -> None:
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        require(self.reg_u >= 0, "reg_u", self.reg_u, "must be ≥ 0")
        require(self.reg_i >= 0, "reg_i", self.reg_i, "must be ≥ 0")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        require(self.reg >= 0, "reg", self.reg, "must be ≥ 0")


class Baseline(Model):
    """μ + b_u + b_i. State: `user_bias_` (n_users,), `item_bias_` (n_items,) float32, `global_mean_`."""

    name = "baseline"
    config_class = BaselineConfig
    explicit = True

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        method = trial.suggest_categorical("method", ["als", "sgd"])
        params = {"method": method, "epochs": trial.suggest_int("epochs", 5, 60)}
        if method == "als":
            params["reg_u"] = trial.suggest_float("reg_u", 1.0, 50.0, log=True)
            params["reg_i"] = trial.suggest_float("reg_i", 1.0, 50.0, log=True)
        else:
            params["learning_rate"] = trial.suggest_float("learning_rate", 1e-3, 2e-2, log=True)
            params["reg"] = trial.suggest_float("reg", 1e-3, 0.3, log=True)
        return params

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        users = train.user.astype(np.int64)
        items = train.item.astype(np.int64)
        ratings = train.rating.astype(np.float64)
        mu = float(ratings.mean())
        if c.method == "als":
            bu, bi = als_biases(users, items, ratings, train.n_users, train.n_items, mu,
                                c.epochs, c.reg_u, c.reg_i)
        else:  # float32 like biased-mf's training, so the two share one compiled kernel
            f32 = np.float32
            rng = np.random.default_rng(c.seed)
            bu, bi = np.zeros(train.n_users, f32), np.zeros(train.n_items, f32)
            no_u, no_i = np.zeros((train.n_users, 0), f32), np.zeros((train.n_items, 0), f32)
            r32 = train.rating.astype(f32)
            for _ in range(c.epochs):
                o = rng.permutation(len(train))
                sgd_epoch(train.user[o], train.item[o], r32[o], no_u, no_i, bu, bi, f32(mu),
                          f32(c.learning_rate), f32(0.0), f32(c.reg), True)
        self.global_mean_ = mu
        self.user_bias_ = bu.astype(np.float32)
        self.item_bias_ = bi.astype(np.float32)
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        bi = self.item_bias_ if items is None else self.item_bias_[items]
        return (self.global_mean_ + self.user_bias_[users][:, None] + bi[None, :]).astype(np.float32)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Clipped estimates μ + b_u + b_i for (user, item) pairs, shape (n,); NaN for unknown users."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        known = (users >= 0) & (users < self.n_users_)
        out = np.full(len(users), np.nan, np.float32)
        est = self.global_mean_ + self.user_bias_[users[known]] + self.item_bias_[items[known]]
        out[known] = np.clip(est, self.min_rating_, self.max_rating_)
        return out
