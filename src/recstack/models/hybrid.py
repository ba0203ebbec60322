"""Hybrid matrix factorisation over side features, LightFM-style.

Kula, "Metadata Embeddings for User and Item Cold-start Recommendations" (CBRecSys 2015): every
user and every item is described by a sparse feature row — its own identity feature plus side
features (genres, release year, title text, KG facts; age, gender, occupation, region) — and
its representation is the weighted sum of those features' embeddings:

    p_u = Σ_f x_uf · e_f          q_i = Σ_g x_ig · e_g          b_i = Σ_g x_ig · β_g
    score(u, i) = p_u · q_i + b_i

Learned by adagrad over (user, positive item) pairs with uniformly drawn negatives: BPR
(Rendle et al., UAI 2009) or WARP (Weston, Bengio & Usunier, IJCAI 2011: keep drawing until a
negative scores within the margin, weight the update by log⌊(n−1)/draws⌋). An item nobody has
rated, or a user without history, has no trained identity (it stays zero), so it is placed by
its features alone: a brand-new item or user gets meaningful scores without retraining.

Feature rows: identity weight 1, then each side group's block L1-normalised per row (L2 for
dense groups such as `text` and `vectors`) and multiplied by `side_weight`. Shapes: item rows
(n_items, n_item_features), user rows (n_users, n_user_features), embeddings (n_features, factors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recstack import progress
from recstack.data.interactions import Interactions
from recstack.errors import DataError
from recstack.features.matrix import FeatureMatrix, item_feature_matrix, user_feature_matrix
from recstack.models.base import Explanation, Model
from recstack.models.config import Config, require

DENSE_GROUPS = ("text", "vector")


@dataclass(frozen=True)
class HybridConfig(Config):
    """`item_features` / `user_features`: comma-separated feature groups (see
    `recstack.features`), "auto" (every default group the data has) or "none"; `identity`:
    include each user's / item's own feature; `side_weight`: weight of each side group per row;
    `loss` "warp" or "bpr"; `min_rating`: interactions rated lower are not positives (0: all are);
    `max_sampled`: negatives drawn per positive (WARP's search, BPR's
    retries past positives); `fold_in_steps`, `fold_in_lr`, `fold_in_reg`: the gradient steps
    that place a new user from a few ratings (item embeddings fixed). Feature options:
    `year_bucket`, `kg_min_items`, `text_dims`."""

    factors: int = 64
    epochs: int = 20
    learning_rate: float = 0.05
    loss: Literal["warp", "bpr"] = "warp"  # warp: draw until a negative is within the margin; bpr: one negative
    max_sampled: int = 30  # negatives drawn per positive at most (drawn positives are skipped)
    min_rating: float = 0.0
    item_reg: float = 1e-6  # L2 regularisation of the item feature embeddings and biases
    user_reg: float = 1e-6  # L2 regularisation of the user feature embeddings
    item_features: str = "auto"  # comma list of item feature groups, auto or none
    user_features: str = "auto"  # comma list of user feature groups, auto or none
    identity: bool = True  # give each user and item its own feature (false: side features only)
    side_weight: float = 1.0  # weight of each side feature group in a row (the identity weighs 1)
    year_bucket: int = 5
    kg_min_items: int = 2  # a knowledge-graph fact is a feature when this many items share it
    text_dims: int = 32  # principal components kept of the title embeddings (text group)
    fold_in_steps: int = 50  # BPR steps placing a new user from a few ratings (0: features only)
    fold_in_lr: float = 0.5  # step size of those fold-in steps
    fold_in_reg: float = 0.1  # L2 pull of a folded-in user towards its features' embedding
    seed: int = 0

    def check(self) -> None:
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        require(self.max_sampled >= 1, "max_sampled", self.max_sampled, "must be ≥ 1")
        for name in ("item_reg", "user_reg", "side_weight", "fold_in_reg"):
            require(getattr(self, name) >= 0, name, getattr(self, name), "must be ≥ 0")
        require(self.fold_in_steps >= 0, "fold_in_steps", self.fold_in_steps, "must be ≥ 0")
        require(self.year_bucket >= 1, "year_bucket", self.year_bucket, "must be ≥ 1")
        require(self.text_dims >= 1, "text_dims", self.text_dims, "must be ≥ 1")

    def groups(self, which: str) -> tuple[str, ...] | None:
        value = (self.item_features if which == "item" else self.user_features).strip()
        if value == "auto":
            return None
        return tuple(g.strip() for g in value.split(",") if g.strip() and g.strip() != "none")


# ---- feature rows ---------------------------------------------------------------------------------
def feature_rows(fm: FeatureMatrix, n: int, identity: bool, side_weight: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """(n, [n] + n_side) float32 CSR rows — identity (weight 1) then each group normalised per
    row and scaled by `side_weight` — and the column names (`id:<index>` for identities)."""
    blocks, names = [], []
    if identity:
        blocks.append(sp.identity(n, dtype=np.float32, format="csr"))
        names += [f"id:{k}" for k in range(n)]
    for g in dict.fromkeys(fm.groups.tolist()):
        part = fm.select([g])
        m = sp.csr_matrix(part.matrix, dtype=np.float64)
        if g in DENSE_GROUPS:
            norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        else:
            norm = np.asarray(abs(m).sum(axis=1)).ravel()
        m = sp.diags(side_weight / np.where(norm > 0, norm, 1.0)) @ m
        blocks.append(m.astype(np.float32))
        names += part.names.tolist()
    if not blocks:
        raise DataError("hybrid needs at least one feature: identity=false and no side features")
    out = sp.hstack(blocks, format="csr", dtype=np.float32)
    out.sort_indices()
    return out, np.asarray(names, dtype=str)


# ---- the epoch: fast kernel and slow twin ----------------------------------------------------------
@numba.njit(cache=True, nogil=True, fastmath=True)
def _rep(indptr, indices, data, row, E, out):  # pragma: no cover - numba
    out[:] = 0.0
    for k in range(indptr[row], indptr[row + 1]):
        out += data[k] * E[indices[k]]


@numba.njit(cache=True, nogil=True)
def _is_positive(pos_indptr, pos_indices, u, j):  # pragma: no cover - numba
    lo, hi = pos_indptr[u], pos_indptr[u + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if pos_indices[mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo < pos_indptr[u + 1] and pos_indices[lo] == j


@numba.njit(cache=True, nogil=True, fastmath=True)
def _step(indptr, indices, data, row, E, G, B, GB, grad_vec, sign, reg, lr, bias):  # pragma: no cover
    for k in range(indptr[row], indptr[row + 1]):
        f, x = indices[k], data[k]
        g = sign * x * grad_vec + reg * E[f]
        G[f] += g * g
        E[f] -= lr * g / np.sqrt(G[f] + 1e-6)
        if bias:
            gb = sign * x + reg * B[f]
            GB[f] += gb * gb
            B[f] -= lr * gb / np.sqrt(GB[f] + 1e-6)


@numba.njit(cache=True, nogil=True, fastmath=True)
def hybrid_epoch(users, items, neg, pos_indptr, pos_indices, u_indptr, u_indices, u_data, i_indptr, i_indices,
                 i_data, EU, EI, BI, GU, GI, GBI, lr, user_reg, item_reg, warp, n_items):  # pragma: no cover
    """One adagrad pass over the (user, item) positives in the given order; `neg` (n, max_sampled)
    holds the candidate negatives each positive may draw, in order. Returns the summed loss."""
    d = EU.shape[1]
    p = np.empty(d, np.float32)
    qi = np.empty(d, np.float32)
    qj = np.empty(d, np.float32)
    dummy_b = np.zeros(1, np.float32)
    total = 0.0
    for s in range(len(users)):
        u, i = users[s], items[s]
        _rep(u_indptr, u_indices, u_data, u, EU, p)
        _rep(i_indptr, i_indices, i_data, i, EI, qi)
        bi = 0.0
        for k in range(i_indptr[i], i_indptr[i + 1]):
            bi += i_data[k] * BI[i_indices[k]]
        x_ui = np.dot(p, qi) + bi
        j = -1
        weight = 0.0
        for t in range(neg.shape[1]):
            c = neg[s, t]
            if _is_positive(pos_indptr, pos_indices, u, c):
                continue
            _rep(i_indptr, i_indices, i_data, c, EI, qj)
            bj = 0.0
            for k in range(i_indptr[c], i_indptr[c + 1]):
                bj += i_data[k] * BI[i_indices[k]]
            x_uj = np.dot(p, qj) + bj
            if warp:
                if x_uj > x_ui - 1.0:
                    j = c
                    weight = np.log(max(1.0, np.floor((n_items - 1) / (t + 1))))
                    total += weight * (1.0 - x_ui + x_uj)
                    break
            else:
                j = c
                z = x_ui - x_uj
                weight = 1.0 / (1.0 + np.exp(z))
                total += np.log1p(np.exp(-z)) if z > -30 else -z
                break
        if j < 0 or weight == 0.0:
            continue
        diff = (qi - qj).astype(np.float32)
        gp = (weight * diff).astype(np.float32)
        gq = (weight * p).astype(np.float32)
        _step(u_indptr, u_indices, u_data, u, EU, GU, dummy_b, dummy_b, gp, -1.0, user_reg, lr, False)
        _step(i_indptr, i_indices, i_data, i, EI, GI, BI, GBI, gq, -weight, item_reg, lr, True)
        _step(i_indptr, i_indices, i_data, j, EI, GI, BI, GBI, gq, weight, item_reg, lr, True)
    return total


def hybrid_epoch_slow(users, items, neg, pos_indptr, pos_indices, u_indptr, u_indices, u_data, i_indptr,
                      i_indices, i_data, EU, EI, BI, GU, GI, GBI, lr, user_reg, item_reg, warp, n_items) -> float:
    """Plain NumPy twin of `hybrid_epoch`: the same updates in the same order."""
    def rep(indptr, indices, data, row, E):
        sl = slice(indptr[row], indptr[row + 1])
        return (data[sl, None] * E[indices[sl]]).sum(axis=0, dtype=np.float32)

    def step(indptr, indices, data, row, E, G, B, GB, vec, sign, reg, bias):
        for k in range(indptr[row], indptr[row + 1]):
            f, x = indices[k], np.float32(data[k])
            g = sign * x * vec + reg * E[f]
            G[f] += g * g
            E[f] -= lr * g / np.sqrt(G[f] + 1e-6)
            if bias:
                gb = sign * x + reg * B[f]
                GB[f] += gb * gb
                B[f] -= lr * gb / np.sqrt(GB[f] + 1e-6)

    total = 0.0
    for s in range(len(users)):
        u, i = int(users[s]), int(items[s])
        p = rep(u_indptr, u_indices, u_data, u, EU)
        qi = rep(i_indptr, i_indices, i_data, i, EI)
        x_ui = float(p @ qi) + float(i_data[i_indptr[i]:i_indptr[i + 1]] @ BI[i_indices[i_indptr[i]:i_indptr[i + 1]]])
        positives = set(pos_indices[pos_indptr[u]:pos_indptr[u + 1]].tolist())
        j, weight, qj = -1, 0.0, None
        for t in range(neg.shape[1]):
            c = int(neg[s, t])
            if c in positives:
                continue
            qj = rep(i_indptr, i_indices, i_data, c, EI)
            sl = slice(i_indptr[c], i_indptr[c + 1])
            x_uj = float(p @ qj) + float(i_data[sl] @ BI[i_indices[sl]])
            if warp:
                if x_uj > x_ui - 1.0:
                    j, weight = c, float(np.log(max(1.0, np.floor((n_items - 1) / (t + 1)))))
                    total += weight * (1.0 - x_ui + x_uj)
                    break
            else:
                j, z = c, x_ui - x_uj
                weight = 1.0 / (1.0 + np.exp(z))
                total += np.log1p(np.exp(-z)) if z > -30 else -z
                break
        if j < 0 or weight == 0.0:
            continue
        gp = (weight * (qi - qj)).astype(np.float32)
        gq = (weight * p).astype(np.float32)
        step(u_indptr, u_indices, u_data, u, EU, GU, None, None, gp, -1.0, user_reg, False)
        step(i_indptr, i_indices, i_data, i, EI, GI, BI, GBI, gq, -weight, item_reg, True)
        step(i_indptr, i_indices, i_data, j, EI, GI, BI, GBI, gq, weight, item_reg, True)
    return total


# ---- the model ----------------------------------------------------------------------------------------
def _csr_state(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sort_indices()
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)


class Hybrid(Model):
    """score(u, i) = p_u · q_i + b_i with p, q, b sums of feature embeddings (module docstring).

    State: `user_embeddings_` (n_user_features, f), `item_embeddings_` (n_item_features, f),
    `item_biases_` (n_item_features,); the feature rows as CSR arrays `user_rows_*`, `item_rows_*`
    and their column names `user_feature_names_`, `item_feature_names_`; `loss_history_` (epochs,).
    """

    name = "hybrid"
    config_class = HybridConfig
    explicit = False

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128]),
            "epochs": trial.suggest_int("epochs", 10, 60, step=10),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
            "loss": trial.suggest_categorical("loss", ["warp", "bpr"]),
            "item_reg": trial.suggest_float("item_reg", 1e-7, 1e-4, log=True),
            "user_reg": trial.suggest_float("user_reg", 1e-7, 1e-4, log=True),
            "side_weight": trial.suggest_float("side_weight", 0.25, 4.0, log=True),
        }

    # ---- features -----------------------------------------------------------------------------
    def _features(self, data: Interactions) -> tuple[FeatureMatrix, FeatureMatrix]:
        c = self.config
        ig, ug = c.groups("item"), c.groups("user")
        items = item_feature_matrix(data, ig, year_bucket=c.year_bucket, kg_min_items=c.kg_min_items,
                                    text_dims=c.text_dims)
        users = user_feature_matrix(data, ug)
        return items, users

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        item_fm, user_fm = self._features(train)
        irows, inames = feature_rows(item_fm, train.n_items, c.identity, c.side_weight)
        urows, unames = feature_rows(user_fm, train.n_users, c.identity, c.side_weight)
        self.item_rows_indptr_, self.item_rows_indices_, self.item_rows_data_ = _csr_state(irows)
        self.user_rows_indptr_, self.user_rows_indices_, self.user_rows_data_ = _csr_state(urows)
        self.item_feature_names_, self.user_feature_names_ = inames, unames
        rng = np.random.default_rng(c.seed)
        d = c.factors
        EU = ((rng.random((len(unames), d)) - 0.5) / d).astype(np.float32)
        EI = ((rng.random((len(inames), d)) - 0.5) / d).astype(np.float32)
        BI = np.zeros(len(inames), np.float32)
        GU, GI, GBI = np.ones_like(EU), np.ones_like(EI), np.ones_like(BI)
        pos = train.csr.copy()  # never touch the data's cached matrix
        pos.data[pos.data < c.min_rating] = 0.0
        pos.eliminate_zeros()
        pos.sort_indices()
        pos_indptr, pos_indices = pos.indptr.astype(np.int64), pos.indices.astype(np.int32)
        coo = pos.tocoo()
        users, items = coo.row.astype(np.int32), coo.col.astype(np.int32)
        losses = []
        with progress.Bar("hybrid", total=c.epochs) as bar:
            for _ in range(c.epochs):
                order = rng.permutation(len(users))
                neg = rng.integers(0, train.n_items, (len(users), c.max_sampled), dtype=np.int32)
                loss = hybrid_epoch(users[order], items[order], neg, pos_indptr, pos_indices,
                                    self.user_rows_indptr_, self.user_rows_indices_, self.user_rows_data_,
                                    self.item_rows_indptr_, self.item_rows_indices_, self.item_rows_data_,
                                    EU, EI, BI, GU, GI, GBI, np.float32(c.learning_rate),
                                    np.float32(c.user_reg), np.float32(c.item_reg), c.loss == "warp",
                                    train.n_items)
                losses.append(loss / max(len(users), 1))
                bar.update(loss=losses[-1])
        if c.identity:  # no training row: the identity was never trained, so it must not count
            EU[:train.n_users][train.user_activity == 0] = 0.0
            EI[:train.n_items][train.item_popularity == 0] = 0.0
            BI[:train.n_items][train.item_popularity == 0] = 0.0
        self.user_embeddings_, self.item_embeddings_, self.item_biases_ = EU, EI, BI
        self.loss_history_ = np.asarray(losses, np.float64)

    # ---- scoring ---------------------------------------------------------------------------------
    def _rows(self, which: str) -> sp.csr_matrix:
        a = "item" if which == "item" else "user"
        names = self.item_feature_names_ if which == "item" else self.user_feature_names_
        n = self.n_items_ if which == "item" else self.n_users_
        return sp.csr_matrix((getattr(self, f"{a}_rows_data_"), getattr(self, f"{a}_rows_indices_"),
                              getattr(self, f"{a}_rows_indptr_")), shape=(n, len(names)))

    def item_representations(self, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, f) item vectors q and (n,) biases b, for `items` (default all)."""
        rows = self._rows("item") if items is None else self._rows("item")[items]
        return np.asarray(rows @ self.item_embeddings_), np.asarray(rows @ self.item_biases_).ravel()

    def user_representations(self, users: np.ndarray | None = None) -> np.ndarray:
        """(n, f) user vectors p, for `users` (default all)."""
        rows = self._rows("user") if users is None else self._rows("user")[users]
        return np.asarray(rows @ self.user_embeddings_)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        q, b = self.item_representations(items)
        return (self.user_representations(users) @ q.T + b[None, :]).astype(np.float32)

    def _row_of(self, names: Sequence[str], which: str) -> sp.csr_matrix:
        """One feature row from side-feature names, normalised per group as in training."""
        known = self.item_feature_names_ if which == "item" else self.user_feature_names_
        col = {n: k for k, n in enumerate(known.tolist())}
        unknown = [n for n in names if n not in col]
        if unknown:
            raise DataError(f"unknown {which} feature(s) {', '.join(map(repr, unknown[:5]))}; "
                            f"known e.g. {', '.join(n for n in known.tolist() if not n.startswith('id:'))[:200]}")
        groups: dict[str, list[int]] = {}
        for n in dict.fromkeys(names):
            groups.setdefault(n.split("=")[0].split(":")[0], []).append(col[n])
        idx, val = [], []
        for cols in groups.values():
            idx += cols
            val += [self.config.side_weight / len(cols)] * len(cols)
        return sp.csr_matrix((np.asarray(val, np.float32), (np.zeros(len(idx), int), idx)), shape=(1, len(known)))

    def score_new_item(self, features: Sequence[str]) -> np.ndarray:
        """(n_users,) scores of a brand-new item described only by side-feature names
        (e.g. ["genre=Comedy", "year=1995-1999"]); no retraining."""
        row = self._row_of(features, "item")
        q = np.asarray(row @ self.item_embeddings_).ravel()
        b = float((row @ self.item_biases_)[0])
        return (self.user_representations() @ q + b).astype(np.float32)

    def score_new_user(self, items: np.ndarray, ratings: np.ndarray, user: int | None = None,
                       features: Sequence[str] | None = None) -> np.ndarray:
        """(n_items,) scores for a user known by a few rated `items` and optionally side features
        (`features` names, or the stored features of vocabulary index `user`; never its identity).

        The user vector starts from the features' embedding sum and moves by `fold_in_steps`
        gradient steps of BPR (the given items against every other item; item embeddings
        fixed, L2 `fold_in_reg` on the move)."""
        c = self.config
        if features is not None:
            p0 = np.asarray(self._row_of(features, "user") @ self.user_embeddings_).ravel()
        elif user is not None and 0 <= user < self.n_users_:
            row = self._rows("user")[user]
            side = ~np.char.startswith(self.user_feature_names_[row.indices].astype(str), "id:")
            p0 = (row.data[side] @ self.user_embeddings_[row.indices[side]]).ravel()
        else:
            p0 = np.zeros(self.user_embeddings_.shape[1])
        q, b = self.item_representations()
        q, b = q.astype(np.float64), b.astype(np.float64)
        items = np.unique(np.asarray(items, np.int64))
        e = np.zeros_like(p0, dtype=np.float64)
        if len(items) and c.fold_in_steps:
            others = np.ones(len(b), bool)
            others[items] = False
            for _ in range(c.fold_in_steps):
                x = q @ (p0 + e) + b
                z = x[items][:, None] - x[None, others]
                g = 1.0 / (1.0 + np.exp(np.clip(z, -30, 30)))  # d/dz log σ(z) = σ(−z)
                g /= g.size
                grad = g.sum(axis=1) @ q[items] - g.sum(axis=0) @ q[others]
                e += c.fold_in_lr * (grad - c.fold_in_reg * e)
        return (q @ (p0 + e) + b).astype(np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items whose representation q is nearest by cosine (the item itself excluded)."""
        q, _ = self.item_representations()
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        sims = qn @ qn[item]
        sims[item] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        return top, sims[top].astype(np.float32)

    def explain(self, user: int, item: int, history: Any = None) -> Explanation:
        """The score of (user, item) split over the item's features: p_u · x_ig e_g + x_ig β_g for
        each feature g of the item (kind "feature", key its name; the identity is key "id");
        the parts sum to the score. `history` is not needed."""
        row = self._rows("item")[item]
        p = self.user_representations(np.array([user]))[0]
        parts = []
        for g, x in zip(row.indices, row.data):
            name = str(self.item_feature_names_[g])
            parts.append({"kind": "feature", "key": "id" if name.startswith("id:") else name,
                          "contribution": float(x * (self.item_embeddings_[g] @ p + self.item_biases_[g]))})
        parts.sort(key=lambda d: -abs(d["contribution"]))
        return Explanation(float(sum(d["contribution"] for d in parts)), parts, True)


@dataclass(frozen=True)
class KGHybridConfig(HybridConfig):
    """`hybrid` whose item features include the knowledge graph (`kg` must be among them)."""

    item_features: str = "genres,year,kg"  # comma list of item feature groups; must hold kg

    def check(self) -> None:
        super().check()
        groups = self.groups("item") or ()
        require("kg" in groups, "item_features", self.item_features, "the kg model needs the 'kg' group")


class KGHybrid(Hybrid):
    """`hybrid` with ML-100K's knowledge-graph facts (item × (relation, entity)) as item features;
    the same model without `kg` in `item_features` is its ablation."""

    name = "kg"
    config_class = KGHybridConfig
