"""Reference-library models wrapped in recstack's `Model` protocol, for side-by-side runs.

Each adapter fits the library's own algorithm on the very rows of our fold (a Surprise
`Trainset`, implicit's user×item CSR, a cornac `Dataset`, all built from the same
`Interactions`) and answers through `predict`/`score`, so `recstack.evaluate.run_protocol`
scores both sides with the same code. `library_fit_seconds_` (and `_cpu_seconds_`) time the
library's own `fit` alone, without building its input from our rows. They are registered under names such as
`surprise-svd` only inside the benchmark process (`register()`).

| name                  | library  | algorithm (defaults are the library's)                 | paired with |
|-----------------------|----------|--------------------------------------------------------|-------------|
| surprise-svd          | Surprise | SVD: 100 factors, 20 epochs, lr 0.005, reg 0.02         | biased-mf   |
| surprise-svdpp        | Surprise | SVDpp: 20 factors, 20 epochs, lr 0.007, reg 0.02        | svdpp       |
| surprise-nmf          | Surprise | NMF: 15 factors, 50 epochs, reg 0.06                    | nmf         |
| surprise-knnbaseline  | Surprise | KNNBaseline: item-based, pearson_baseline, k 40         | item-knn    |
| surprise-baselineonly | Surprise | BaselineOnly: ALS, 10 epochs, reg_u 15, reg_i 10        | baseline    |
| surprise-slopeone     | Surprise | SlopeOne                                               | —           |
| implicit-als          | implicit | AlternatingLeastSquares (CG), same config as `als`      | als         |
| implicit-bm25         | implicit | BM25Recommender item-kNN (K as item-knn, K1 1.2, B 0.75) | item-knn  |
| cornac-ease           | cornac   | EASEᴿ (Steck 2019), same λ, no positivity clip          | ease        |
| myfm                  | myFM     | Bayesian FM (Gibbs), same features, rank, sweeps as fm  | fm          |
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError
from recstack.models.base import MODELS, Model
from recstack.models.config import Config, require


def surprise_trainset(train: Interactions) -> Any:
    """A Surprise `Trainset` whose raw ids are our user/item indices, rows in our order."""
    import pandas as pd
    from surprise import Dataset, Reader

    frame = pd.DataFrame({"user": train.user.astype(np.int64), "item": train.item.astype(np.int64),
                          "rating": train.rating.astype(np.float64)})
    scale = (float(train.rating.min()), float(train.rating.max()))
    return Dataset.load_from_df(frame, Reader(rating_scale=scale)).build_full_trainset()


def surprise_testset(users: np.ndarray, items: np.ndarray) -> list[tuple[int, int, float]]:
    """Surprise's test-set format: (raw user, raw item, true rating) triples (rating unused)."""
    return list(zip(np.asarray(users).tolist(), np.asarray(items).tolist(), [0.0] * len(users)))


class SurpriseModel(Model):
    """Base adapter: fit a Surprise algorithm on our rows; `predict` goes through `algo.test`."""

    explicit = True
    library: ClassVar[str] = "surprise"

    def _algorithm(self) -> Any:
        raise NotImplementedError

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        trainset = surprise_trainset(train)
        self._algo = self._algorithm()
        t0, c0 = time.perf_counter(), time.process_time()
        self._algo.fit(trainset)
        self.library_fit_seconds_ = time.perf_counter() - t0
        self.library_fit_cpu_seconds_ = time.process_time() - c0

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Surprise's estimates (clipped to the rating scale; impossible ones get its default)."""
        predictions = self._algo.test(surprise_testset(users, items))
        return np.fromiter((p.est for p in predictions), np.float32, len(predictions))

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        raise RecstackError(f"{self.name} is a rating-only reference; it is run on rating protocols")


@dataclass(frozen=True)
class SurpriseSVDConfig(Config):
    factors: int = 100
    epochs: int = 20
    learning_rate: float = 0.005
    reg: float = 0.02
    init_std: float = 0.1
    seed: int = 0


class SurpriseSVD(SurpriseModel):
    """`surprise.SVD` (Funk / Koren biased MF by SGD)."""

    name = "surprise-svd"
    config_class = SurpriseSVDConfig

    def _algorithm(self) -> Any:
        from surprise import SVD

        c = self.config
        return SVD(n_factors=c.factors, n_epochs=c.epochs, lr_all=c.learning_rate, reg_all=c.reg,
                   init_std_dev=c.init_std, random_state=c.seed)


@dataclass(frozen=True)
class SurpriseSVDppConfig(Config):
    factors: int = 20
    epochs: int = 20
    learning_rate: float = 0.007
    reg: float = 0.02
    init_std: float = 0.1
    cache_ratings: bool = False  # Surprise's option: keep each user's ratings in memory (faster, more memory)
    seed: int = 0


class SurpriseSVDpp(SurpriseModel):
    """`surprise.SVDpp` (Koren 2008, SVD++ with implicit feedback from rated items)."""

    name = "surprise-svdpp"
    config_class = SurpriseSVDppConfig

    def _algorithm(self) -> Any:
        from surprise import SVDpp

        c = self.config
        return SVDpp(n_factors=c.factors, n_epochs=c.epochs, lr_all=c.learning_rate, reg_all=c.reg,
                     init_std_dev=c.init_std, cache_ratings=c.cache_ratings, random_state=c.seed)


@dataclass(frozen=True)
class SurpriseNMFConfig(Config):
    factors: int = 15
    epochs: int = 50
    reg_pu: float = 0.06  # L2 regularisation of the user factors
    reg_qi: float = 0.06  # L2 regularisation of the item factors
    seed: int = 0


class SurpriseNMF(SurpriseModel):
    """`surprise.NMF` (Luo et al. 2014, multiplicative updates, unbiased)."""

    name = "surprise-nmf"
    config_class = SurpriseNMFConfig

    def _algorithm(self) -> Any:
        from surprise import NMF

        c = self.config
        return NMF(n_factors=c.factors, n_epochs=c.epochs, reg_pu=c.reg_pu, reg_qi=c.reg_qi,
                   random_state=c.seed)


@dataclass(frozen=True)
class SurpriseKNNBaselineConfig(Config):
    k: int = 40
    min_k: int = 1
    similarity: Literal["pearson_baseline", "cosine", "msd", "pearson"] = "pearson_baseline"  # Surprise's measure
    user_based: bool = False
    shrinkage: int = 100


class SurpriseKNNBaseline(SurpriseModel):
    """`surprise.KNNBaseline` (Koren 2010 baseline + neighbourhood), item-based by default."""

    name = "surprise-knnbaseline"
    config_class = SurpriseKNNBaselineConfig

    def _algorithm(self) -> Any:
        from surprise import KNNBaseline

        c = self.config
        sim = {"name": c.similarity, "user_based": c.user_based, "shrinkage": c.shrinkage}
        return KNNBaseline(k=c.k, min_k=c.min_k, sim_options=sim, verbose=False)


@dataclass(frozen=True)
class SurpriseBaselineConfig(Config):
    epochs: int = 10
    reg_u: float = 15.0  # regularisation of the user biases (Surprise's ALS baselines)
    reg_i: float = 10.0  # regularisation of the item biases (Surprise's ALS baselines)


class SurpriseBaselineOnly(SurpriseModel):
    """`surprise.BaselineOnly` (μ + b_u + b_i by ALS)."""

    name = "surprise-baselineonly"
    config_class = SurpriseBaselineConfig

    def _algorithm(self) -> Any:
        from surprise import BaselineOnly

        c = self.config
        opts = {"method": "als", "n_epochs": c.epochs, "reg_u": c.reg_u, "reg_i": c.reg_i}
        return BaselineOnly(bsl_options=opts, verbose=False)


@dataclass(frozen=True)
class EmptyConfig(Config):
    pass


class SurpriseSlopeOne(SurpriseModel):
    """`surprise.SlopeOne` (Lemire & Maclachlan 2005)."""

    name = "surprise-slopeone"
    config_class = EmptyConfig

    def _algorithm(self) -> Any:
        from surprise import SlopeOne

        return SlopeOne()


# ---- implicit feedback -----------------------------------------------------------------------
def _one_blas_thread() -> Any:
    """A context limiting BLAS to one thread (threadpoolctl), or a no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def feedback_matrix(train: Interactions, binary: bool) -> sp.csr_matrix:
    """(n_users, n_items) float32 CSR of 1s (binary) or ratings, from our rows."""
    values = np.ones(len(train), np.float32) if binary else train.rating.astype(np.float32)
    return sp.csr_matrix((values, (train.user, train.item)), shape=(train.n_users, train.n_items))


@dataclass(frozen=True)
class ImplicitALSConfig(Config):
    """implicit's defaults, except `one_plus`: True gives implicit the confidence 1 + alpha·r of
    Hu et al. (and recstack's `als`) as its input matrix; False keeps implicit's own alpha·r."""

    factors: int = 100
    epochs: int = 15
    reg: float = 0.01
    alpha: float = 1.0  # confidence weight of an interaction
    binary: bool = True
    one_plus: bool = True  # confidence 1 + alpha·r as input (as recstack's als); false: implicit's alpha·r
    cg: bool = True  # conjugate-gradient solver (false: Cholesky)
    cg_steps: int = 3
    threads: int = 2
    seed: int = 0

    def check(self) -> None:
        require(self.threads >= 1, "threads", self.threads, "must be ≥ 1")


class ImplicitALS(Model):
    """`implicit.cpu.als.AlternatingLeastSquares` (Hu, Koren & Volinsky 2008; CG solver)."""

    name = "implicit-als"
    library: ClassVar[str] = "implicit"
    config_class = ImplicitALSConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        X = feedback_matrix(train, c.binary)
        alpha = c.alpha
        if c.one_plus:
            X.data = 1.0 + c.alpha * X.data
            alpha = 1.0
        with _one_blas_thread():  # implicit's own advice: BLAS threads fight its num_threads
            algo = AlternatingLeastSquares(factors=c.factors, regularization=c.reg, alpha=alpha,
                                           iterations=c.epochs, use_cg=c.cg, calculate_training_loss=False,
                                           num_threads=c.threads, random_state=c.seed)
            algo.cg_steps = c.cg_steps  # an attribute, not a constructor argument, in implicit 0.7
            t0, c0 = time.perf_counter(), time.process_time()
            algo.fit(X, show_progress=False)
        self.library_fit_seconds_ = time.perf_counter() - t0
        self.library_fit_cpu_seconds_ = time.process_time() - c0
        self.user_factors_ = np.asarray(algo.user_factors, np.float32)
        self.item_factors_ = np.asarray(algo.item_factors, np.float32)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        Q = self.item_factors_ if items is None else self.item_factors_[items]
        return self.user_factors_[users] @ Q.T


@dataclass(frozen=True)
class ImplicitBM25Config(Config):
    k: int = 20
    k1: float = 1.2  # BM25 saturation of an item's term weight
    b: float = 0.75  # BM25 length normalisation (0: none, 1: full)
    binary: bool = True
    threads: int = 2


class ImplicitBM25(Model):
    """`implicit.nearest_neighbours.BM25Recommender`: item-kNN on BM25-weighted co-occurrence.

    Scores are implicit's own: the user's row of the training matrix times the item×item
    similarity it learned.
    """

    name = "implicit-bm25"
    library: ClassVar[str] = "implicit"
    config_class = ImplicitBM25Config

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        from implicit.nearest_neighbours import BM25Recommender

        c = self.config
        algo = BM25Recommender(K=c.k, K1=c.k1, B=c.b, num_threads=c.threads)
        self._X = feedback_matrix(train, c.binary)
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():  # implicit converts its own BM25-weighted COO matrix and says so
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            algo.fit(self._X, show_progress=False)
        self.library_fit_seconds_ = time.perf_counter() - t0
        self.library_fit_cpu_seconds_ = time.process_time() - c0
        self._similarity = algo.similarity.tocsr()

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        sim = self._similarity if items is None else self._similarity[:, items]
        return np.asarray((self._X[users] @ sim).todense(), np.float32)


@dataclass(frozen=True)
class CornacEASEConfig(Config):
    lambda_: float = 500.0
    binary: bool = True
    positive_only: bool = False  # keep only positive item-item weights (cornac's posB)

    aliases: ClassVar[dict[str, str]] = {"lambda": "lambda_"}


class CornacEASE(Model):
    """`cornac.models.EASE` (Steck 2019), fitted on a cornac `Dataset` of our rows."""

    name = "cornac-ease"
    library: ClassVar[str] = "cornac"
    config_class = CornacEASEConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        from cornac.data import Dataset
        from cornac.models import EASE

        c = self.config
        values = np.ones(len(train)) if c.binary else train.rating.astype(np.float64)
        triples = list(zip(train.user.tolist(), train.item.tolist(), values.tolist()))
        data = Dataset.build(triples, fmt="UIR", seed=0)
        algo = EASE(lamb=c.lambda_, posB=c.positive_only, verbose=False)
        t0, c0 = time.perf_counter(), time.process_time()
        algo.fit(data)
        self.library_fit_seconds_ = time.perf_counter() - t0
        self.library_fit_cpu_seconds_ = time.process_time() - c0
        inner = np.array([data.iid_map[i] for i in range(train.n_items) if i in data.iid_map])
        ours = np.array([i for i in range(train.n_items) if i in data.iid_map])
        B = np.zeros((train.n_items, train.n_items), np.float32)
        B[np.ix_(ours, ours)] = algo.B[np.ix_(inner, inner)]
        self._B = B
        self._X = feedback_matrix(train, c.binary)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        B = self._B if items is None else self._B[:, items]
        return np.asarray(self._X[users] @ B, np.float32)


@dataclass(frozen=True)
class MyFMConfig(Config):
    """myFM's `MyFMRegressor` on `fm`'s design (the same blocks from `recstack.models.fm_design`):
    `features`, `factors` (rank), `burn_in` + `samples` (n_iter; the last `samples` are kept)."""

    features: str = "auto"  # feature groups of the design, as `fm`'s `features`
    factors: int = 10
    burn_in: int = 10
    samples: int = 200
    seed: int = 0


class MyFM(Model):
    """`myfm.MyFMRegressor` (Bayesian FM by Gibbs sampling) on the relation blocks `fm` uses:
    user and item blocks as myFM `RelationBlock`s, the rating's day as its plain design matrix."""

    name = "myfm"
    library: ClassVar[str] = "myfm"
    config_class = MyFMConfig
    explicit = True
    uses_time = True

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        import myfm
        from myfm import RelationBlock

        from recstack.models.fm_design import build_blocks, context_block, parse_groups

        c = self.config
        groups = parse_groups(c.features, train)
        ublock, iblock = build_blocks(train, groups)
        self._blocks = (ublock.X, iblock.X)
        grouping = list(ublock.group) + list(iblock.group + len(ublock.groups))
        X = None
        self._days = None
        if "date" in groups:
            dblock, self._days = context_block("date", train)
            X = self._date_rows(train.timestamp)
            grouping = [len(ublock.groups) + len(iblock.groups)] * dblock.X.shape[1] + grouping
        fm = myfm.MyFMRegressor(rank=c.factors, random_seed=c.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fm.fit(X, train.rating.astype(np.float64),
                   X_rel=[RelationBlock(train.user, ublock.X), RelationBlock(train.item, iblock.X)],
                   grouping=grouping, n_iter=c.burn_in + c.samples, n_kept_samples=c.samples)
        self.library_fit_seconds_ = time.perf_counter() - t0
        self.library_fit_cpu_seconds_ = time.process_time() - c0
        self._fm = fm
        self._range = (float(train.rating.min()), float(train.rating.max()))

    def _date_rows(self, timestamps: np.ndarray) -> sp.csr_matrix:
        from recstack.models.fm_design import context_keys, key_index

        d = key_index(self._days, context_keys("date", np.zeros(len(timestamps), np.int64), timestamps))
        ok = d >= 0
        return sp.csr_matrix((np.ones(int(ok.sum())), (np.flatnonzero(ok), d[ok])),
                             shape=(len(d), len(self._days)))

    def predict(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        from myfm import RelationBlock

        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        X = None
        if self._days is not None:
            X = self._date_rows(timestamps if timestamps is not None else np.zeros(len(users), np.int64))
        est = self._fm.predict(X, [RelationBlock(users, self._blocks[0]), RelationBlock(items, self._blocks[1])])
        return np.clip(est, *self._range).astype(np.float32)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        items = np.arange(self.n_items_) if items is None else items
        uu, ii = np.repeat(users, len(items)), np.tile(items, len(users))
        return self.predict(uu, ii).reshape(len(users), len(items))


# name -> (class, the recstack model it is compared with or None)
REFERENCES: dict[str, tuple[type[Model], str | None]] = {
    "surprise-svd": (SurpriseSVD, "biased-mf"),
    "surprise-svdpp": (SurpriseSVDpp, "svdpp"),
    "surprise-nmf": (SurpriseNMF, "nmf"),
    "surprise-knnbaseline": (SurpriseKNNBaseline, "item-knn"),
    "surprise-baselineonly": (SurpriseBaselineOnly, "baseline"),
    "surprise-slopeone": (SurpriseSlopeOne, None),
    "implicit-als": (ImplicitALS, "als"),
    "implicit-bm25": (ImplicitBM25, "item-knn"),
    "cornac-ease": (CornacEASE, "ease"),
    "myfm": (MyFM, "fm"),
}


def mirror_params(reference: str, ours: dict[str, Any]) -> dict[str, Any]:
    """The reference's parameters that copy the paired recstack model's full config `ours`
    (same factors, iterations, regularisation, confidence, λ or k), so both fit the same model."""
    fields = REFERENCES[reference][0].config_class.field_names()
    out = {key: ours[key] for key in ("factors", "epochs", "reg", "alpha", "seed", "cg_steps", "k",
                                      "lambda_", "binary", "features", "burn_in", "samples")
           if key in ours and key in fields}
    if reference == "implicit-als":
        if "confidence" in ours:
            out["binary"] = ours["confidence"] == "binary"
        if "solver" in ours:
            out["cg"] = ours["solver"] == "cg"
    return out


def register() -> None:
    """Make the adapters reachable by name through `run_protocol` (this process only)."""
    for name, (cls, _) in REFERENCES.items():
        MODELS.setdefault(name, f"{cls.__module__}:{cls.__name__}")


def available(name: str) -> str | None:
    """None when the adapter's library imports, else a one-line reason."""
    cls = REFERENCES[name][0]
    lib = getattr(cls, "library", "")
    try:
        __import__(lib)
    except ImportError as exc:
        return f"{lib} is not installed ({exc.name})"
    return None
