"""EASE + implicit ALS: a per-user standardised linear blend of an item-item and a low-rank model.

The two parts see the data differently: EASE (Steck, WWW 2019; here with the genre / release-year
pseudo-users of Jeunen, Van Balen & Goethals, RecSys 2020) regresses each binary item column on
all the others, while implicit ALS (Hu, Koren & Volinsky, ICDM 2008) fits a rank-f model in which
the rating sets the confidence c = 1 + alpha·r of each interaction. Their errors differ, so the
blend ranks better than either (the score-level fusion of Burke, "Hybrid Recommender Systems",
UMUAI 2002, "weighted" hybrid). Scores are put on one scale per user before adding them:

    z(s)_ui = (s_ui − mean_u) / sd_u,  mean and sd over the items user u has not interacted with,
    score_ui = z(s_EASE)_ui + weight · z(s_ALS)_ui.

A per-user affine map keeps each part's ranking of a user's unseen items, so `weight = 0` ranks
exactly as EASE does and a very large `weight` exactly as ALS does. Shapes: the training matrix X
is (n_users, n_items); scores are (len(users), n_items).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.models.als import ALS
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.models.ease import EASE

EASE_FIELDS = ("lambda_", "binary", "side_weight", "side_year_bucket")
ALS_FIELDS = ("factors", "epochs", "reg", "alpha", "confidence", "solver", "cg_steps", "seed")


@dataclass(frozen=True)
class EASEALSConfig(Config):
    """EASE part: `lambda_` (alias `lambda`), `binary`, `side_weight`, `side_year_bucket` (as in
    `ease`). ALS part (implicit mode): `factors`, `epochs`, `reg`, `alpha`, `confidence`,
    `solver`, `cg_steps`, `seed` (as in `als`). `weight`: how much the standardised ALS scores
    count against the standardised EASE scores (0: EASE alone). Defaults are the msr-75 choice
    (three stratified 75/25 carves of its training part), except `side_weight`, left at 0 so the
    model runs on data without item features (configs/ease-als.msr-75.json sets 3)."""

    aliases = {"lambda": "lambda_"}

    lambda_: float = 900.0
    binary: bool = True
    side_weight: float = 0.0
    side_year_bucket: int = 2
    factors: int = 24
    epochs: int = 30
    reg: float = 50.0  # ALS: λ on the factors (absolute)
    alpha: float = 2.0  # ALS confidence of an interaction: c = 1 + alpha·r
    confidence: Literal["rating", "binary"] = "rating"
    solver: Literal["cg", "exact"] = "cg"
    cg_steps: int = 3
    seed: int = 0
    weight: float = 2.0  # weight of the standardised ALS scores against EASE's (0: EASE alone)

    def check(self) -> None:
        require(self.weight >= 0, "weight", self.weight, "must be ≥ 0")
        self.ease_config()  # each part validates its own fields, naming the bad one
        self.als_config()

    def ease_config(self) -> dict[str, Any]:
        return EASE.config_class.build(None, {f: getattr(self, f) for f in EASE_FIELDS}).to_dict()

    def als_config(self) -> dict[str, Any]:
        params = {f: getattr(self, f) for f in ALS_FIELDS}
        return ALS.config_class.build(None, {**params, "mode": "implicit"}).to_dict()


def standardize_unseen(scores: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """(n, m) scores minus each row's mean, over its sd, both over the row's unseen columns.

    `seen` is the (n, m) sparse matrix of interactions; a row with fewer than two unseen columns
    (or constant scores there) is only centred.
    """
    s = np.asarray(scores, dtype=np.float64)
    mean, sd = unseen_moments(s, seen)
    return (s - mean) / sd


def unseen_moments(scores: np.ndarray, seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1) mean and sd of each row of `scores` over its unseen columns, as `standardize_unseen`
    uses them (an sd of 0 is returned as 1: the row is only centred)."""
    s = np.asarray(scores, dtype=np.float64)
    unseen = np.ones(s.shape, dtype=bool)
    coo = seen.tocoo()
    unseen[coo.row, coo.col] = False
    n = unseen.sum(axis=1, keepdims=True)
    mean = np.where(unseen, s, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    dev = np.where(unseen, s - mean, 0.0)
    sd = np.sqrt((dev ** 2).sum(axis=1, keepdims=True) / np.maximum(n, 1))
    return mean, np.where(sd > 0, sd, 1.0)


class EASEALS(Model):
    """score(u) = z(x_u · B) + weight · z(p_u · Q), z standardising over u's unseen items.

    State: the EASE part's arrays under `ease.` (`weights_` (n_items, n_items), the training CSR)
    and the ALS part's under `als.` (`user_factors_` (n_users, f), `item_factors_` (n_items, f)).
    """

    name = "ease-als"
    config_class = EASEALSConfig
    explicit = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "lambda_": trial.suggest_float("lambda_", 100.0, 5000.0, log=True),
            "side_weight": trial.suggest_categorical("side_weight", [0.0, 1.0, 3.0]),
            "factors": trial.suggest_categorical("factors", [8, 16, 24, 32, 64]),
            "reg": trial.suggest_float("reg", 1.0, 200.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.3, 10.0, log=True),
            "weight": trial.suggest_float("weight", 0.25, 4.0, log=True),
        }

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._ease = EASE(self.config.ease_config()).fit(train)
        self._als = ALS(self.config.als_config()).fit(train)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        seen = self._ease._matrix()[users]
        z = standardize_unseen(self._ease._score(users, None), seen)
        if self.config.weight > 0:
            z += self.config.weight * standardize_unseen(self._als._score(users, None), seen)
        return (z if items is None else z[:, items]).astype(np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """(n_items,) scores for a user known only by `ratings` of `items`: the EASE row x·B and
        the ALS fold-in (item factors fixed), standardised over the other items as in `score`."""
        items = np.asarray(items, np.int64)
        seen = sp.csr_matrix((np.ones(len(items)), (np.zeros(len(items), np.int64), items)),
                             shape=(1, self.n_items_))
        z = standardize_unseen(self._ease.score_new_user(items, ratings)[None, :], seen)
        if self.config.weight > 0:
            z += self.config.weight * standardize_unseen(self._als.score_new_user(items, ratings)[None, :], seen)
        return z[0].astype(np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the largest EASE weight B[item, j] (the item-item part's neighbours)."""
        return self._ease.similar_items(item, k)

    # ---- persistence: each part's state under its own prefix ------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, scalars = super().get_state()
        for prefix, part in (("ease", self._ease), ("als", self._als)):
            a, s = part.get_state()
            arrays.update({f"{prefix}.{k}": v for k, v in a.items()})
            scalars.update({f"{prefix}.{k}": v for k, v in s.items()})
        return arrays, scalars

    def set_state(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        def own(d: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if "." not in k}

        def part(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
            return {k[len(prefix) + 1:]: v for k, v in d.items() if k.startswith(prefix + ".")}

        super().set_state(own(arrays), own(scalars))
        self._ease = EASE(self.config.ease_config())
        self._ease.set_state(part(arrays, "ease"), part(scalars, "ease"))
        self._als = ALS(self.config.als_config())
        self._als.set_state(part(arrays, "als"), part(scalars, "als"))

