"""The model protocol and the one registry of model names.

A model subclasses `Model`, declares its `Config` dataclass, and implements two methods:

    _fit(train, valid)         learn; store learned state in attributes ending in `_`
    _score(users, items)       (len(users), n_items | len(items)) float32 scores for known users

`fit`, `score`, `predict`, persistence, recommending and evaluation come from here and the
free functions built on `score`. A score of NaN means "cannot score" (e.g. an unknown user).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, MissingExtraError, RecstackError
from recstack.models.config import Config, describe_params

# name -> "module:Class". Explicit, one place; modules load lazily so optional extras
# (torch for the deep models) are only needed by the models that use them.
MODELS: dict[str, str] = {
    # level 1
    "mf": "recstack.models.mf:MF",
    "biased-mf": "recstack.models.mf:BiasedMF",
    # level 2: factorization
    "baseline": "recstack.models.baseline:Baseline",
    "svdpp": "recstack.models.svdpp:SVDpp",
    "nmf": "recstack.models.nmf:NMF",
    "als": "recstack.models.als:ALS",
    "bpmf": "recstack.models.bpmf:BPMF",
    # level 4: side information and time
    "fm": "recstack.models.fm:FM",
    "timesvdpp": "recstack.models.timesvdpp:TimeSVDpp",
    # level 2: neighbourhood, linear, popularity, content
    "user-knn": "recstack.models.knn:UserKNN",
    "item-knn": "recstack.models.knn:ItemKNN",
    "ease": "recstack.models.ease:EASE",
    "ease-als": "recstack.models.ease_als:EASEALS",
    "rp3beta": "recstack.models.graph:RP3Beta",
    "slim": "recstack.models.slim:SLIM",
    "popular": "recstack.models.popular:Popular",
    "content": "recstack.models.content:ContentBased",
    # level 3: sequential baseline and deep models (torch: the [deep] extra)
    "markov": "recstack.models.markov:Markov",
    "ncf": "recstack.models.ncf:NCF",
    "cdae": "recstack.models.autoencoders:CDAE",
    "multvae": "recstack.models.autoencoders:MultVAE",
    "multdae": "recstack.models.autoencoders:MultDAE",
    "lightgcn": "recstack.models.lightgcn:LightGCN",
    "sasrec": "recstack.models.sasrec:SASRec",
    # level 4: sequential
    "gru4rec": "recstack.models.gru4rec:GRU4Rec",
    "bert4rec": "recstack.models.bert4rec:BERT4Rec",
    "tisasrec": "recstack.models.tisasrec:TiSASRec",
    # level 4: side information and composition
    "hybrid": "recstack.models.hybrid:Hybrid",
    "kg": "recstack.models.hybrid:KGHybrid",
    "blend": "recstack.models.composite:Blend",
    "chain": "recstack.models.composite:Chain",
}

# which optional extra a module needs, for a clear message when it is missing
EXTRAS: dict[str, str] = {"torch": "deep"}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_model_class(name: str) -> type[Model]:
    """The class registered under `name`; `ConfigError` lists the known names when absent."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    module, _, cls = MODELS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if exc.name == module:
            raise ConfigError(f"model {name!r} is registered but its module {module} is missing") from None
        if extra is None:
            raise
        raise MissingExtraError(
            f"model {name!r} needs the optional extra [{extra}]: pip install -e '.[{extra}]'"
            + (" (install torch==2.13.0 first)" if extra == "deep" else "")
        ) from None
    return getattr(mod, cls)


def make_model(name: str, config: Mapping[str, Any] | Config | None = None, **params: Any) -> Model:
    return get_model_class(name)(config, **params)


def describe_model(name: str) -> dict[str, Any]:
    """`recstack models`: a model's one-line summary, hyperparameters (name, type, default,
    meaning) and abilities at its default config. A model whose extra is missing says so."""
    try:
        cls = get_model_class(name)
    except MissingExtraError as exc:
        return {"name": name, "error": str(exc)}
    model = cls()
    doc = " ".join((cls.__doc__ or "").split())
    summary = doc.split(". ")[0].rstrip(".")
    found = abilities(model)
    params = describe_params(cls.config_class)
    config = getattr(model, "config", None)
    for p in params:  # the model's own defaults (e.g. user-knn sets user_based) over its config class's
        p["default"] = getattr(config, p["name"], p["default"])
    return {"name": name, "class": cls.__name__, "summary": summary,
            "params": params, "abilities": found,
            "ability_text": [ABILITY_TEXT[a] for a in found]}


class NotFittedError(RecstackError):
    """`score`/`predict` called before `fit`."""


# ---- optional abilities ---------------------------------------------------------------------------
# A model implements `fit` and `score`; everything else is an ability it may also have. Callers
# ask `has_ability(model, NAME)` (or `require_ability`) — never `hasattr`, never a model name.


@runtime_checkable
class PredictsRatings(Protocol):
    """Rating estimates for (user, item) pairs: `predict(users, items)` → (n,) on the rating scale.

    Every `Model` has a `predict` method; only models whose `explicit` is true (which may follow
    the config, e.g. `als` in explicit mode) have the ability."""

    explicit: bool

    def predict(self, users: Any, items: Any) -> Any: ...


@runtime_checkable
class FoldsInUsers(Protocol):
    """Scores for a user known only by a few ratings, without retraining:
    `score_new_user(items, ratings)` → (n_items,) float32 (same kind as `score`)."""

    def score_new_user(self, items: Any, ratings: Any) -> Any: ...


@runtime_checkable
class SimilarItems(Protocol):
    """Items nearest to an item: `similar_items(item, k)` → (indices (k,), similarities (k,))."""

    def similar_items(self, item: int, k: int = 10) -> Any: ...


@runtime_checkable
class PartialFit(Protocol):
    """Learn from new events without a full refit: `partial_fit(events)` → self.

    `events` is an `Interactions` whose vocabularies extend the model's training vocabularies
    (known ids keep their indices, new users and items are appended); the model grows its state
    to the new sizes."""

    def partial_fit(self, events: Any) -> Any: ...


@runtime_checkable
class ItemEmbeddings(Protocol):
    """Vectors for approximate nearest-neighbour retrieval: `item_vectors()` → (n_items, d) and
    `user_vectors(users)` → (len(users), d) such that user·item orders items as `score` does."""

    def item_vectors(self) -> Any: ...

    def user_vectors(self, users: Any) -> Any: ...


@runtime_checkable
class Explains(Protocol):
    """`explain(user, item, history)` → `Explanation`: the score and parts that sum to it (or a hint).

    `history` is (item indices, ratings) of what the user rated in training; models that keep
    their training matrix may ignore it."""

    def explain(self, user: int, item: int, history: Any = None) -> Any: ...


@dataclass
class Explanation:
    """Why `score` (the unclipped score the ranking used): parts whose contributions sum to it.

    Each part is {"kind": "item" | "feature" | "bias", "key": index or name, "contribution": float}.
    `exact` is False when the parts are a hint (e.g. attention weights), not an attribution;
    `method` then says how the hint was made (e.g. "attention (rollout)", "occlusion")."""

    score: float
    parts: list[dict[str, Any]] = field(default_factory=list)
    exact: bool = True
    method: str = ""


def item_parts(items: np.ndarray, contributions: np.ndarray, rest: float = 0.0, exact: bool = True,
               biases: dict[str, float] | None = None) -> Explanation:
    """An `Explanation` whose score is the sum of its parts: biases, one part per history item
    with a non-zero contribution, and an optional unexplained `rest`."""
    parts: list[dict[str, Any]] = [{"kind": "bias", "key": k, "contribution": float(v)}
                                   for k, v in (biases or {}).items()]
    nz = np.flatnonzero(contributions != 0)
    order = nz[np.argsort(-np.abs(contributions[nz]), kind="stable")]
    parts += [{"kind": "item", "key": int(items[j]), "contribution": float(contributions[j])} for j in order]
    if rest:
        parts.append({"kind": "rest", "key": "user factors beyond this history", "contribution": float(rest)})
    return Explanation(float(sum(p["contribution"] for p in parts)), parts, exact)


ABILITIES: dict[str, type] = {
    "predicts_ratings": PredictsRatings,
    "folds_in_users": FoldsInUsers,
    "similar_items": SimilarItems,
    "partial_fit": PartialFit,
    "item_embeddings": ItemEmbeddings,
    "explains": Explains,
}

ABILITY_TEXT: dict[str, str] = {
    "predicts_ratings": "rating prediction",
    "folds_in_users": "fold-in of new users",
    "similar_items": "similar items",
    "partial_fit": "incremental updates (partial_fit)",
    "item_embeddings": "item embeddings (ANN retrieval)",
    "explains": "explanations",
    "gpu": "GPU (device=cuda)",
}


def has_ability(model: Any, ability: str) -> bool:
    """Whether `model` (an instance) has `ability` (a key of `ABILITIES`, or "gpu"): the one check."""
    if ability == "gpu":
        return bool(getattr(model, "supports_gpu", False))
    if ability not in ABILITIES:
        raise ConfigError(f"unknown ability {ability!r}; known: {', '.join([*ABILITIES, 'gpu'])}")
    if not isinstance(model, ABILITIES[ability]):
        return False
    if ability == "predicts_ratings":
        return bool(model.explicit)
    return bool(getattr(model, "has_" + ability, True))


def abilities(model: Any) -> list[str]:
    """Every ability `model` has, in `ABILITY_TEXT` order."""
    return [name for name in ABILITY_TEXT if has_ability(model, name)]


def require_ability(model: Any, ability: str) -> None:
    """Raise `RecstackError` naming the model and the missing ability."""
    if not has_ability(model, ability):
        name = getattr(model, "name", type(model).__name__)
        raise RecstackError(f"model {name!r} has no {ABILITY_TEXT.get(ability, ability)}")


class Model:
    """Base class: typed config in, learned state (attributes ending in `_`) out."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Config]] = Config
    explicit: ClassVar[bool] = False  # True: scores are rating estimates (RMSE applies)
    supports_gpu: ClassVar[bool] = False  # True: `device=cuda` trains and scores on a GPU
    # True: fit works from the (user, item) rating matrix alone — no timestamps, no row order —
    # so `recstack train --data PARQUET` leaves the timestamp column unread and keeps the rows in
    # the CSR's order (`read_parquet(timestamps=False, order="user")`; saved timestamps are 0)
    matrix_only: ClassVar[bool] = False

    def __init__(self, config: Config | Mapping[str, Any] | None = None, **params: Any) -> None:
        self.config = self.config_class.build(config, params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        return f"{type(self).__name__}({args})"

    # ---- learning --------------------------------------------------------------------------
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Learn from `train` (refitting starts from scratch); `valid` may drive early stopping."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)
        if len(train) == 0:
            raise RecstackError("cannot fit on an empty training set")
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self._fit(train, valid)
        return self

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        raise NotImplementedError

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Hyperparameters to try for one Optuna `trial` (`trial.suggest_*`); used by `recstack tune`.

        Each model declares its own space next to its code; the default has none.
        """
        raise ConfigError(f"model {cls.name!r} declares no search space for tuning")

    @property
    def fitted(self) -> bool:
        return hasattr(self, "n_items_")

    @property
    def score_kind(self) -> str:
        """What `score` returns: "rating" (estimates on the rating scale) or "ranking" (an order)."""
        return "rating" if self.explicit else "ranking"

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, users: np.ndarray | list[int], items: np.ndarray | list[int] | None = None) -> np.ndarray:
        """(len(users), n_items or len(items)) float32 scores; NaN rows for unknown users."""
        if not self.fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        item_arr = None if items is None else np.asarray(items, dtype=np.int64).reshape(-1)
        if item_arr is not None and len(item_arr) and (item_arr.min() < 0 or item_arr.max() >= self.n_items_):
            raise RecstackError(f"item index out of range 0..{self.n_items_ - 1}")
        width = self.n_items_ if item_arr is None else len(item_arr)
        known = (users >= 0) & (users < self.n_users_)
        if known.all():
            return np.asarray(self._score(users, item_arr), dtype=np.float32)
        out = np.full((len(users), width), np.nan, dtype=np.float32)
        if known.any():
            out[known] = self._score(users[known], item_arr)
        return out

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Rating estimates for (user, item) pairs, shape (n,); explicit-feedback models only.

        Unknown users give NaN. The default scores each distinct user once against the items
        it needs; models override it with a direct pairwise formula when they have one.
        """
        if not self.explicit:
            raise RecstackError(f"{self.name} ranks items but does not estimate ratings")
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        out = np.empty(len(users), np.float32)
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.diff(users[order])) + 1
        for group in np.split(order, bounds):
            if len(group):
                out[group] = self.score(users[group[:1]], items[group])[0]
        return out

    # ---- persistence -----------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned state as (arrays, JSON scalars): every public attribute ending in `_`."""
        arrays, scalars = {}, {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif isinstance(value, (bool, int, float, str)) or value is None:
                scalars[key] = value
            elif isinstance(value, (np.integer, np.floating)):
                scalars[key] = value.item()
            else:
                raise RecstackError(f"{type(self).__name__}.{key}: override get_state() "
                                    f"to save a {type(value).__name__}")
        return arrays, scalars

    def set_state(self, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        for key, value in scalars.items():
            setattr(self, key, value)
        for key, value in arrays.items():
            setattr(self, key, np.asarray(value))
