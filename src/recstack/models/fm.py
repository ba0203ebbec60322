"""Factorization machine (name `fm`): Rendle 2010, "Factorization Machines".

Input row per rating: [user block row u | item block row i] (`fm_design.py`): user/item one-hots
plus the chosen side-feature groups (age, gender, occupation, zip; genres, year) and the SVD++-
style implicit groups `history` (items the user rated, 1/sqrt(n)) and `raters` (users who rated
the item, 1/sqrt(n)). Because each block depends on one side only, the score factorises:

    ŷ(u, i) = w0 + B_u + B_i + Q_u · Q_i        (see `fm_kernels.py`)

Learners: `mcmc` — Bayesian FM by Gibbs sampling with Gaussian priors per feature group and
Gamma/Gaussian hyperpriors (libFM's MCMC; Freudenthaler, Schmidt-Thieme & Rendle 2011; Rendle
2012), predictions average the sampled scores; `sgd` — point estimate by SGD, squared error
(`loss="squared"`) or BPR for ranking (`loss="bpr"`). With `features=""` (ids only) the model is
biased MF: w0 = μ, B_u = b_u, B_i = b_i, Q_u · Q_i = p_u · q_i.

State: `user_samples_` (n_users, S, k+2) = [Q_u, w0 + B_u, 1] and `item_samples_` (n_items, S,
k+2) = [Q_i, 1, B_i] per kept sample (S = 1 for SGD), float32, so a score is the mean of their
dot products; plus the sampled feature parameters and the two blocks, for `explain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.errors import RecstackError
from recstack.models.base import Explanation, Model
from recstack.models.config import Config, require
from recstack.models.fm_design import CONTEXT_GROUPS, build_blocks, context_block, context_keys, key_index, parse_groups
from recstack.models.fm_kernels import GibbsBlock, bpr_epoch, gibbs_sweep, sgd_epoch
from recstack.models.mf import EarlyStopping
from recstack.progress import Bar
from recstack.split import validation_split


@dataclass(frozen=True)
class FMConfig(Config):
    """Hyperparameters of `fm`.

    features: "auto" (every group the data has), "" (ids only = biased MF) or a comma list of
    age, gender, occupation, zip, history, genres, year, raters. learner: mcmc | sgd; loss:
    squared (ratings) | bpr (ranking; sgd only). factors: k. MCMC: burn_in sweeps discarded,
    samples sweeps averaged (all stored), init_std spread of the starting factors. SGD: epochs,
    learning_rate, reg (factors), reg_bias (linear weights), early stopping on a `valid_fraction`
    carve (squared loss) with `patience`. The SGD defaults (init_std 0.01, learning_rate 0.003,
    reg 0.05) were chosen on a 10% carve of u1's training part (validation RMSE 0.906 with the
    demographic and genre/year groups; init_std 0.1 or learning_rate 0.01 gave 0.92-0.95).
    """

    features: str = "auto"  # side groups: auto (all the data has), "" (ids only) or a comma list
    learner: Literal["mcmc", "sgd"] = "mcmc"  # mcmc: Bayesian FM by Gibbs sampling; sgd: point estimate
    loss: Literal["squared", "bpr"] = "squared"  # squared: rating error; bpr: pairwise ranking (sgd only)
    factors: int = 10
    burn_in: int = 10
    samples: int = 200
    init_std: float = 0.01
    epochs: int = 100
    learning_rate: float = 0.003
    reg: float = 0.05  # SGD: L2 regularisation of the factors
    reg_bias: float = 0.02  # SGD: L2 regularisation of the linear weights
    early_stopping: bool = True
    patience: int = 3
    valid_fraction: float = 0.1
    seed: int = 0

    def check(self) -> None:
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.burn_in >= 0, "burn_in", self.burn_in, "must be ≥ 0")
        require(self.samples >= 1, "samples", self.samples, "must be ≥ 1")
        require(self.init_std >= 0, "init_std", self.init_std, "must be ≥ 0")
        require(self.epochs >= 1, "epochs", self.epochs, "must be ≥ 1")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        require(self.reg >= 0, "reg", self.reg, "must be ≥ 0")
        require(self.reg_bias >= 0, "reg_bias", self.reg_bias, "must be ≥ 0")
        require(self.patience >= 1, "patience", self.patience, "must be ≥ 1")
        require(0 < self.valid_fraction < 1, "valid_fraction", self.valid_fraction, "must be in (0, 1)")
        require(not (self.loss == "bpr" and self.learner == "mcmc"), "loss", self.loss,
                "bpr needs learner=sgd (the Gibbs sampler is for squared error)")


def _csr_parts(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float64)


def _caches(X: sp.csr_matrix, w: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q = X V (n, k), B = X w + ½ Σ_f (Q² − X² V²) (n,)) of one block."""
    Q = X @ V
    B = X @ w + 0.5 * ((Q ** 2).sum(axis=1) - X.multiply(X) @ (V ** 2).sum(axis=1))
    return Q, np.asarray(B).ravel()


def _predict_rows(blocks: list[GibbsBlock], ents: list[np.ndarray], w0: float) -> np.ndarray:
    """(N,) FM predictions for rows given each block's entity per row (−1 = the row has no
    feature in that block): w0 + Σ_b B_b + Σ_{b<c} Q_b · Q_c from the blocks' caches."""
    out = np.full(len(ents[0]), w0)
    qsum = np.zeros((len(ents[0]), blocks[0].Q.shape[1]))
    sq = np.zeros(len(ents[0]))
    for b, ent in zip(blocks, ents):
        ok = ent >= 0
        Q = np.where(ok[:, None], b.Q[np.maximum(ent, 0)], 0.0)
        out += np.where(ok, b.B[np.maximum(ent, 0)], 0.0)
        qsum += Q
        sq += (Q * Q).sum(axis=1)
    return out + 0.5 * ((qsum * qsum).sum(axis=1) - sq)


def _rows_by(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ptr (n+1,), rows) grouping row numbers by entity."""
    order = np.argsort(ids, kind="stable").astype(np.int64)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=n))]).astype(np.int64)
    return ptr, order


def _draw_prior(rng: np.random.Generator, x: np.ndarray, lam: float) -> tuple[float, float]:
    """(μ, λ) of one group's Gaussian prior given its values x (n,) and the current λ: μ | λ,
    then λ | μ, under hyperpriors μ ~ N(0, 1/(γ0 λ)), λ ~ Gamma(α_λ/2, β_λ/2) with
    γ0 = α_λ = β_λ = 1 (libFM's defaults)."""
    n = len(x)
    mu = rng.normal(x.sum() / (n + 1.0), 1.0 / np.sqrt((n + 1.0) * lam))
    lam = rng.gamma(0.5 * (1.0 + n + 1.0), 2.0 / (1.0 + float(((x - mu) ** 2).sum()) + mu * mu))
    return float(mu), float(lam)


class FM(Model):
    """Factorization machine over user/item one-hots and side-feature groups (see module doc)."""

    name = "fm"
    config_class = FMConfig
    uses_time = True  # `predict` takes the ratings' timestamps (used by the `date` group)

    @property
    def explicit(self) -> bool:  # type: ignore[override]
        """Rating estimates with squared error; a ranking with BPR."""
        return self.config.loss == "squared"

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [8, 10, 16, 24, 32]),
            "features": trial.suggest_categorical(
                "features", ["auto", "history,raters", "history,raters,genres,year",
                             "history,raters,age,gender,occupation,zip,genres,year"]),
            "init_std": trial.suggest_float("init_std", 0.02, 0.3, log=True),
        }

    # ---- training ----------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        groups = parse_groups(c.features, train, context=c.learner == "mcmc")
        if c.learner == "sgd" and c.loss == "squared" and valid is None and c.early_stopping:
            fit_part, valid = validation_split(train, c.valid_fraction, c.seed)
        else:
            fit_part = train
        ublock, iblock = build_blocks(fit_part, groups)
        self.context_groups_ = np.asarray([g for g in CONTEXT_GROUPS if g in groups], dtype=str)
        cblocks = []
        for g in self.context_groups_.tolist():
            block, keys = context_block(g, fit_part)
            setattr(self, f"{g}_keys_", keys)
            cblocks.append(block)
        self.groups_ = np.asarray(ublock.groups + iblock.groups + tuple(self.context_groups_), dtype=str)
        self.user_feature_names_, self.item_feature_names_ = ublock.names, iblock.names
        self.Xu_ptr_, self.Xu_idx_, self.Xu_val_ = _csr_parts(ublock.X)
        self.Xi_ptr_, self.Xi_idx_, self.Xi_val_ = _csr_parts(iblock.X)
        self.user_group_ = ublock.group
        self.item_group_ = iblock.group + len(ublock.groups)
        self.global_mean_ = float(fit_part.global_mean)
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())
        rng = np.random.default_rng(c.seed)
        k = c.factors
        Vu = rng.normal(0.0, c.init_std, (ublock.X.shape[1], k))
        Vi = rng.normal(0.0, c.init_std, (iblock.X.shape[1], k))
        wu, wi = np.zeros(len(Vu)), np.zeros(len(Vi))
        if c.learner == "mcmc":
            samples = self._fit_mcmc(fit_part, valid, ublock.X, iblock.X, cblocks, wu, wi, Vu, Vi, rng)
        else:
            samples = self._fit_sgd(fit_part, valid, ublock.X, iblock.X, wu, wi, Vu, Vi, rng)
        w0s, wus, wis, Vus, Vis = (np.asarray(a) for a in zip(*samples))
        self.w0_samples_ = w0s.astype(np.float64)
        self.user_weight_samples_, self.item_weight_samples_ = wus.astype(np.float32), wis.astype(np.float32)
        self.user_factor_samples_, self.item_factor_samples_ = Vus.astype(np.float32), Vis.astype(np.float32)
        S = len(w0s)
        Us = np.empty((train.n_users, S, k + 2), np.float32)
        Is = np.empty((train.n_items, S, k + 2), np.float32)
        for s in range(S):
            Qu, Bu = _caches(ublock.X, wus[s], Vus[s])
            Qi, Bi = _caches(iblock.X, wis[s], Vis[s])
            Us[:, s] = np.column_stack([Qu, w0s[s] + Bu, np.ones(len(Bu))])
            Is[:, s] = np.column_stack([Qi, np.ones(len(Bi)), Bi])
        self.user_samples_, self.item_samples_ = Us, Is
        for c_at, g in enumerate(self.context_groups_.tolist()):  # identity blocks: Q = V, B = w
            draws = [(V, w) for w, V in (d[c_at] for d in self._context_draws)]
            setattr(self, f"{g}_samples_", np.stack([np.column_stack(d) for d in draws], axis=1)
                    .astype(np.float32))  # (n_keys, S, k+1) = [Q, B]
        self._context_draws = []

    def _fit_mcmc(self, train, valid, Xu, Xi, cblocks, wu, wi, Vu, Vi, rng) -> list[tuple]:
        c = self.config
        k = c.factors
        ru, ri = train.user.astype(np.int64), train.item.astype(np.int64)
        y = train.rating.astype(np.float64)
        sides = [(Xu, ru, train.n_users, self.user_group_, wu, Vu), (Xi, ri, train.n_items, self.item_group_, wi, Vi)]
        n_fixed = len(self.groups_) - len(cblocks)
        for c_at, (g, block) in enumerate(zip(self.context_groups_.tolist(), cblocks)):
            keys = getattr(self, f"{g}_keys_")
            ent = key_index(keys, context_keys(g, train.user, train.timestamp))
            Vc = rng.normal(0.0, c.init_std, (len(keys), k))
            sides.append((block.X, ent, len(keys), np.full(len(keys), n_fixed + c_at), np.zeros(len(keys)), Vc))
        blocks = []
        for X, ent, n, group, w, V in sides:
            Q, B = _caches(X, w, V)
            blocks.append(GibbsBlock(ent, *_rows_by(ent, n), _csr_parts(X.T.tocsr()), group, w, V, Q, B))
        G = len(self.groups_)
        mu_w, lam_w = np.zeros(G), np.ones(G)
        mu_v, lam_v = np.zeros((G, k)), np.ones((G, k))
        w0, alpha, lam0 = float(y.mean()), 1.0, 1e-3
        has_valid = valid is not None and len(valid)
        if has_valid:
            vents = [valid.user.astype(np.int64), valid.item.astype(np.int64)]
            for g in self.context_groups_.tolist():
                vents.append(key_index(getattr(self, f"{g}_keys_"), context_keys(g, valid.user, valid.timestamp)))
            vsum = np.zeros(len(valid))
        samples, context_draws, alphas, valid_hist = [], [], [], []
        bar = Bar(f"{self.name} sweeps", total=c.burn_in + c.samples)
        for sweep in range(c.burn_in + c.samples):
            for b, side in zip(blocks, sides):  # fresh caches each sweep: no drift
                b.Q[:], b.B[:] = _caches(side[0], b.w, b.V)
            e = y - _predict_rows(blocks, [b.ent for b in blocks], w0)
            alpha = rng.gamma(0.5 * (1.0 + len(y)), 2.0 / (1.0 + float(e @ e)))
            for g in range(G):
                vals_w = np.concatenate([b.w[b.group == g] for b in blocks])
                mu_w[g], lam_w[g] = _draw_prior(rng, vals_w, lam_w[g])
                for f in range(k):
                    vals_v = np.concatenate([b.V[b.group == g, f] for b in blocks])
                    mu_v[g, f], lam_v[g, f] = _draw_prior(rng, vals_v, lam_v[g, f])
            z = rng.standard_normal(1 + sum(len(b.w) for b in blocks) * (k + 1))
            w0 = gibbs_sweep(blocks, e, w0, mu_w, lam_w, mu_v, lam_v, alpha, lam0, z)
            alphas.append(alpha)
            if sweep >= c.burn_in:
                samples.append((w0, wu.copy(), wi.copy(), Vu.copy(), Vi.copy()))
                context_draws.append([(b.w.copy(), b.V.copy()) for b in blocks[2:]])
                if has_valid:
                    vsum += _predict_rows(blocks, vents, w0)
                    est = np.clip(vsum / len(samples), self.min_rating_, self.max_rating_)
                    valid_hist.append(float(np.sqrt(np.mean((est - valid.rating) ** 2))))
                    bar.update(alpha=alpha, valid_rmse=valid_hist[-1])
                    continue
            bar.update(alpha=alpha)
        bar.close()
        self._context_draws = context_draws
        self.alpha_history_ = np.asarray(alphas)
        self.valid_rmse_history_ = np.asarray(valid_hist)
        return samples

    def _fit_sgd(self, train, valid, Xu, Xi, wu, wi, Vu, Vi, rng) -> list[tuple]:
        c = self.config
        ru, ri = train.user.astype(np.int64), train.item.astype(np.int64)
        y = train.rating.astype(np.float64)
        XuP, XiP = _csr_parts(Xu), _csr_parts(Xi)
        w0 = self.global_mean_ if c.loss == "squared" else 0.0
        stop = EarlyStopping(c.patience, c.early_stopping and c.loss == "squared")
        train_hist, valid_hist = [], []
        if c.loss == "bpr":
            seen = np.unique(ru * train.n_items + ri)
        bar = Bar(f"{self.name} epochs", total=c.epochs)
        for epoch in range(1, c.epochs + 1):
            order = rng.permutation(len(y))
            if c.loss == "squared":
                train_hist.append(float(sgd_epoch(ru[order], ri[order], y[order], XuP, XiP, w0, wu, wi,
                                                  Vu, Vi, c.learning_rate, c.reg, c.reg_bias)))
            else:
                neg = self._negatives(rng, ru[order], seen, train.n_items)
                train_hist.append(float(bpr_epoch(ru[order], ri[order], neg, XuP, XiP, wi, Vu, Vi,
                                                  c.learning_rate, c.reg, c.reg_bias)))
            if c.loss == "squared" and valid is not None and len(valid):
                Qu, Bu = _caches(Xu, wu, Vu)
                Qi, Bi = _caches(Xi, wi, Vi)
                vu, vi = valid.user, valid.item
                err = w0 + Bu[vu] + Bi[vi] + np.einsum("nf,nf->n", Qu[vu], Qi[vi]) - valid.rating
                valid_hist.append(float(np.sqrt(np.mean(err * err))))
                bar.update(train=train_hist[-1], valid_rmse=valid_hist[-1])
                if stop.update(epoch, valid_hist[-1], wu, wi, Vu, Vi):
                    break
            else:
                bar.update(train=train_hist[-1])
        bar.close()
        if stop.enabled and stop.state is not None:
            wu, wi, Vu, Vi = stop.state
        self.epochs_ = epoch
        self.train_history_ = np.asarray(train_hist)
        self.valid_rmse_history_ = np.asarray(valid_hist)
        # features never present in a training row got no update: drop their random start
        Vu[np.bincount(Xu[ru].indices, minlength=len(Vu)) == 0] = 0.0
        Vi[np.bincount(Xi[ri].indices, minlength=len(Vi)) == 0] = 0.0
        return [(w0, wu, wi, Vu, Vi)]

    @staticmethod
    def _negatives(rng: np.random.Generator, users: np.ndarray, seen: np.ndarray, n_items: int) -> np.ndarray:
        """(n,) item per row drawn uniformly among items the row's user has not rated (a few
        rejection rounds; users who rated almost everything may keep a rated one)."""
        neg = rng.integers(0, n_items, len(users))
        for _ in range(20):
            key = users * n_items + neg
            bad = np.flatnonzero(seen[np.minimum(np.searchsorted(seen, key), len(seen) - 1)] == key)
            if not len(bad):
                break
            neg[bad] = rng.integers(0, n_items, len(bad))
        return neg

    # ---- scoring -------------------------------------------------------------------------
    @staticmethod
    def _flat(which: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        S = which if rows is None else which[rows]
        return S.reshape(S.shape[0], -1)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        S = self.user_samples_.shape[1]
        return self._flat(self.user_samples_, users) @ self._flat(self.item_samples_, items).T / np.float32(S)

    def predict(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Clipped rating estimates (posterior means for MCMC) for pairs; NaN for unknown users.

        With context groups (`date`, `userday`) and `timestamps` (seconds), each pair also gets
        its context terms Σ_c [B_c + Q_c · (Q_u + Q_i)] + Σ_{c<c'} Q_c · Q_c'; a context not seen
        in training, or no timestamps, adds nothing (that feature is absent from the row)."""
        if self.config.loss == "bpr":
            raise RecstackError("fm with loss=bpr ranks items but does not estimate ratings")
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        known = (users >= 0) & (users < self.n_users_)
        out = np.full(len(users), np.nan, np.float32)
        u, i = users[known], items[known]
        contexts = []
        if timestamps is not None:
            t = np.asarray(timestamps, np.int64)[known]
            for g in self.context_groups_.tolist():
                contexts.append((getattr(self, f"{g}_samples_"),
                                 key_index(getattr(self, f"{g}_keys_"), context_keys(g, u, t))))
        k = self.config.factors
        est = np.empty(len(u), np.float32)
        for lo in range(0, len(u), 4096):
            part = slice(lo, lo + 4096)
            uu, ii = u[part], i[part]
            est[part] = np.einsum("nf,nf->n", self._flat(self.user_samples_, uu), self._flat(self.item_samples_, ii))
            if contexts:
                q = self.user_samples_[uu, :, :k] + self.item_samples_[ii, :, :k]  # (n, S, k)
                csum = np.zeros_like(q)
                extra = np.zeros(len(uu))
                for samples, idx in contexts:
                    ok = (idx[part] >= 0)[:, None, None]
                    D = np.where(ok, samples[np.maximum(idx[part], 0)], 0.0)  # (n, S, k+1) = [Q_c, B_c]
                    extra += D[:, :, k].sum(axis=1) + np.einsum("nsf,nsf->n", D[:, :, :k], q)
                    extra -= 0.5 * np.einsum("nsf,nsf->n", D[:, :, :k], D[:, :, :k])
                    csum += D[:, :, :k]
                extra += 0.5 * np.einsum("nsf,nsf->n", csum, csum)
                est[part] += extra.astype(np.float32)
        S = self.user_samples_.shape[1]
        out[known] = np.clip(est / S, self.min_rating_, self.max_rating_)
        return out

    # ---- explanations --------------------------------------------------------------------
    def explain(self, user: int, item: int, history: Any = None) -> Explanation:
        """The unclipped score split over the row's features: each feature j gets
        w_j x_j + ½ x_j v_j·(q − x_j v_j) averaged over samples (every pairwise term shared half
        and half between its two features), so the parts add up to the score. Parts: the global
        bias (kind "bias"), one per history item (kind "item": the user's `history` group feature
        of that item), the rest by name (kind "feature": `user:…`, `genre:Comedy`, `year:…`,
        `occupation:…`, the item's `raters` group summed as one). `history` is unused (the model
        keeps its design); sorted by |contribution| within kinds."""
        if not (0 <= user < self.n_users_ and 0 <= item < self.n_items_):
            raise RecstackError(f"explain: user {user} or item {item} is outside the model")
        sides = []
        for a, ptr, idx, val, W, V, names in (
                (user, self.Xu_ptr_, self.Xu_idx_, self.Xu_val_, self.user_weight_samples_,
                 self.user_factor_samples_, self.user_feature_names_),
                (item, self.Xi_ptr_, self.Xi_idx_, self.Xi_val_, self.item_weight_samples_,
                 self.item_factor_samples_, self.item_feature_names_)):
            js, xs = idx[ptr[a]:ptr[a + 1]], val[ptr[a]:ptr[a + 1]]
            Vj = V[:, js].astype(np.float64) * xs[None, :, None]  # (S, nj, k) = x_j v_j
            sides.append((js, xs, W[:, js].astype(np.float64), Vj, names[js]))
        q = sides[0][3].sum(axis=1) + sides[1][3].sum(axis=1)  # (S, k)
        features: dict[str, float] = {}
        items: list[tuple[int, float]] = []
        hist = np.flatnonzero(self.groups_[self.user_group_] == "history")
        first_history = int(hist[0]) if len(hist) else -1  # history column first_history + j is item j
        for side, (js, xs, Wj, Vj, names) in enumerate(sides):
            contrib = (Wj * xs[None, :]).mean(axis=0) + 0.5 * np.einsum(
                "snk,snk->n", Vj, q[:, None, :] - Vj) / len(q)
            for j, name, value in zip(js.tolist(), names.tolist(), contrib.tolist()):
                group = name.partition(":")[0]
                if side == 0 and group == "history":
                    items.append((j - first_history, value))
                else:
                    label = "raters (users who rated this item)" if group == "raters" else name
                    features[label] = features.get(label, 0.0) + value
        parts: list[dict[str, Any]] = [{"kind": "bias", "key": "global bias",
                                        "contribution": float(self.w0_samples_.mean())}]
        parts += [{"kind": "item", "key": j, "contribution": v}
                  for j, v in sorted(items, key=lambda t: -abs(t[1])) if v != 0]
        parts += [{"kind": "feature", "key": k, "contribution": v}
                  for k, v in sorted(features.items(), key=lambda kv: -abs(kv[1]))]
        return Explanation(float(sum(p["contribution"] for p in parts)), parts)
