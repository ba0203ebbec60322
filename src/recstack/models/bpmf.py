"""Bayesian probabilistic matrix factorization by Gibbs sampling (name `bpmf`).

Salakhutdinov & Mnih 2008, "Bayesian Probabilistic Matrix Factorization using Markov Chain
Monte Carlo", with user and item biases sampled as one extra latent dimension each:

    r_ui ~ N(μ + b_u + c_i + u_u · v_i, 1/α)
    θ_u = [u_u, b_u] ~ N(μ_U, Λ_U⁻¹),   φ_i = [v_i, c_i] ~ N(μ_V, Λ_V⁻¹)
    (μ_U, Λ_U), (μ_V, Λ_V) ~ Gaussian-Wishart(μ0 = 0, β0, W0 = w0·I, ν0 = factors + 1)
    α fixed, or (with `sample_alpha`) α ~ Gamma(1, 1) and sampled.

μ is the training mean. Each sweep draws the hyperparameters, then every user's θ_u given
the items, then every item's φ_i given the users (a (k+1)×(k+1) Cholesky per row), then α.
After `burn_in` sweeps, `samples` more are run and predictions are the average of the sampled
scores μ + E[b_u + c_i + u_u · v_i] — not the product of averaged factors.

Stored samples: `keep` of the post-burn-in draws, evenly spaced (0 = all), as the augmented
vectors [u_u, b_u, 1] and [v_i, 1, c_i], so that one sample's score is μ + their dot product.
They are laid out as `user_samples_` (n_users, keep, k+2) and `item_samples_` (n_items, keep,
k+2), float32; averaging over samples is then one matrix product of the flattened rows.

Kernel: `sample_rows` (numba, parallel over rows; the standard-normal noise for every row comes
precomputed from the seeded NumPy generator, so the draws do not depend on the thread count);
`sample_rows_slow` is its plain NumPy twin, the reference the tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from recstack.data.interactions import Interactions
from recstack.models.base import Model
from recstack.models.config import Config, require
from recstack.progress import Bar


@numba.njit(cache=True, parallel=True, error_model="numpy")
def sample_rows(indptr, indices, target, offset, Y, prior_prec, prior_h, alpha, noise, X):  # pragma: no cover
    """Draw every row's vector from its Gaussian conditional, in place.

    For row u with entries j ∈ indptr[u]:indptr[u+1] (columns `indices`, values `target`):
        P = Λ + α Σ_j y_j y_jᵀ,  h = Λμ + α Σ_j (t_j − offset[indices_j]) y_j,
        X[u] = P⁻¹h + L⁻ᵀ z_u   with P = L Lᵀ and z_u = noise[u].
    Y (m, d) design rows of the other side, prior_prec Λ (d, d), prior_h Λμ (d,),
    noise (n, d) standard normals, X (n, d) output; all float64.
    """
    n, d = X.shape
    for u in numba.prange(n):
        P = prior_prec.copy()
        h = prior_h.copy()
        for jj in range(indptr[u], indptr[u + 1]):
            j = indices[jj]
            t = alpha * (target[jj] - offset[j])
            for a in range(d):
                ya = Y[j, a]
                h[a] += t * ya
                aya = alpha * ya
                for e in range(a + 1):
                    P[a, e] += aya * Y[j, e]
        # Cholesky P = L Lᵀ on the lower triangle
        L = np.zeros((d, d))
        for a in range(d):
            for e in range(a + 1):
                s = P[a, e]
                for f in range(e):
                    s -= L[a, f] * L[e, f]
                if a == e:
                    L[a, a] = np.sqrt(s)
                else:
                    L[a, e] = s / L[e, e]
        # forward: L y = h; then back: Lᵀ x = y + z
        y = np.empty(d)
        for a in range(d):
            s = h[a]
            for f in range(a):
                s -= L[a, f] * y[f]
            y[a] = s / L[a, a]
        for a in range(d):
            y[a] += noise[u, a]
        for a in range(d - 1, -1, -1):
            s = y[a]
            for f in range(a + 1, d):
                s -= L[f, a] * X[u, f]
            X[u, a] = s / L[a, a]


@numba.njit(cache=True)
def pair_scores(users, items, U, V):  # pragma: no cover - numba
    """b_u + c_i + u_u · v_i for (n,) pairs, from θ = [u, b] (n_users, k+1) and φ = [v, c]."""
    k = U.shape[1] - 1
    out = np.empty(len(users))
    for p in range(len(users)):
        u, i = users[p], items[p]
        s = U[u, k] + V[i, k]
        for f in range(k):
            s += U[u, f] * V[i, f]
        out[p] = s
    return out


def pair_scores_slow(users, items, U, V):
    """Plain NumPy twin of `pair_scores`."""
    k = U.shape[1] - 1
    return np.einsum("nf,nf->n", U[users, :k], V[items, :k]) + U[users, k] + V[items, k]


def sample_rows_slow(indptr, indices, target, offset, Y, prior_prec, prior_h, alpha, noise, X):
    """Plain NumPy twin of `sample_rows`: same arguments, same draws (same noise)."""
    from scipy.linalg import solve_triangular

    for u in range(X.shape[0]):
        cols = indices[indptr[u]:indptr[u + 1]]
        t = target[indptr[u]:indptr[u + 1]] - offset[cols]
        Yu = Y[cols]
        P = prior_prec + alpha * Yu.T @ Yu
        h = prior_h + alpha * Yu.T @ t
        L = np.linalg.cholesky(P)
        y = solve_triangular(L, h, lower=True)
        X[u] = solve_triangular(L.T, y + noise[u], lower=False)


def sample_wishart(rng: np.random.Generator, scale: np.ndarray, dof: float) -> np.ndarray:
    """One draw of Wishart(scale, dof) by the Bartlett decomposition; (d, d) → (d, d)."""
    d = scale.shape[0]
    C = np.linalg.cholesky(scale)
    A = np.tril(rng.standard_normal((d, d)), -1)
    A[np.diag_indices(d)] = np.sqrt(rng.chisquare(dof - np.arange(d)))
    CA = C @ A
    return CA @ CA.T


def sample_normal_wishart(rng: np.random.Generator, X: np.ndarray, beta0: float, w0: float,
                          nu0: float) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Λ) from the Gaussian-Wishart posterior given rows X (n, d), prior mean 0, W0 = w0·I."""
    n, d = X.shape
    xbar = X.mean(axis=0)
    dev = X - xbar
    S = dev.T @ dev  # n · (biased covariance)
    beta_n, nu_n = beta0 + n, nu0 + n
    mu_n = n * xbar / beta_n
    W_inv = np.eye(d) / w0 + S + (beta0 * n / beta_n) * np.outer(xbar, xbar)
    W_n = np.linalg.inv(W_inv)
    Lam = sample_wishart(rng, (W_n + W_n.T) / 2, nu_n)
    Lc = np.linalg.cholesky(beta_n * Lam)  # μ ~ N(μ_n, (β_n Λ)⁻¹)
    mu = mu_n + np.linalg.solve(Lc.T, rng.standard_normal(d))
    return mu, Lam


@dataclass(frozen=True)
class BPMFConfig(Config):
    """Hyperparameters of `bpmf`.

    factors: latent dimensions k (biases come on top); burn_in: sweeps discarded;
    samples: sweeps averaged after burn-in; keep: at most this many of those are stored for
    scoring, evenly spaced (0 = all); alpha: noise precision (the start value when `sample_alpha`);
    beta0, w0: Gaussian-Wishart prior strength on the mean and scale of the prior precision
    (W0 = w0·I, ν0 = k + 1); init_std: spread of the starting factors.

    Defaults chosen on a 10% validation part carved from GroupLens u1's training part (never a
    test fold), RMSE of the averaged prediction: factors 5/10/15/20/30 → 0.8894/0.8882/0.8883/
    0.8887/0.8894; w0 0.1/0.5/1/2/3/10 → 0.8942/0.8905/0.8882/0.8881/0.8909/0.8969; beta0
    0.2/2/20 → 0.8882/0.8882/0.8880; fixed α 1.5/2.5 → 0.8885/0.9178 against sampled α (settles
    near 1.65); 500 samples instead of 200 → 0.8894; another seed → 0.8875 (Monte Carlo noise
    is about ±0.001).
    """

    factors: int = 10
    burn_in: int = 30
    samples: int = 200
    keep: int = 100  # post-burn-in samples stored for scoring, evenly spaced (0: all)
    alpha: float = 2.0  # precision of the rating noise (the start value when sample_alpha)
    sample_alpha: bool = True  # draw the noise precision each sweep (else keep alpha)
    beta0: float = 2.0  # Gaussian-Wishart prior: strength of the prior on the factor mean
    w0: float = 1.0  # Gaussian-Wishart prior scale W0 = w0·I (ν0 = factors + 1)
    init_std: float = 0.1
    seed: int = 0

    def check(self) -> None:
        require(self.factors >= 1, "factors", self.factors, "must be ≥ 1")
        require(self.burn_in >= 0, "burn_in", self.burn_in, "must be ≥ 0")
        require(self.samples >= 1, "samples", self.samples, "must be ≥ 1")
        require(self.keep >= 0, "keep", self.keep, "must be ≥ 0")
        require(self.alpha > 0, "alpha", self.alpha, "must be > 0")
        require(self.beta0 > 0, "beta0", self.beta0, "must be > 0")
        require(self.w0 > 0, "w0", self.w0, "must be > 0")
        require(self.init_std >= 0, "init_std", self.init_std, "must be ≥ 0")


class BPMF(Model):
    """Bayesian PMF with biases, Gibbs-sampled; predictions average the sampled scores.

    State: `user_samples_` (n_users, keep, k+2), `item_samples_` (n_items, keep, k+2) float32,
    `global_mean_`, `alpha_history_` (burn_in + samples,), `valid_rmse_history_` (RMSE on `valid`
    of the running average over all post-burn-in sweeps so far, one per sweep; empty without it).
    """

    name = "bpmf"
    config_class = BPMFConfig
    explicit = True

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_categorical("factors", [5, 10, 20, 30, 50]),
            "burn_in": trial.suggest_categorical("burn_in", [20, 50, 100]),
            "samples": trial.suggest_categorical("samples", [100, 200, 400]),
            "alpha": trial.suggest_float("alpha", 0.5, 4.0, log=True),
            "sample_alpha": trial.suggest_categorical("sample_alpha", [True, False]),
            "beta0": trial.suggest_float("beta0", 0.1, 10.0, log=True),
            "w0": trial.suggest_float("w0", 0.1, 10.0, log=True),
        }

    # ---- training ----------------------------------------------------------------------
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        c = self.config
        rng = np.random.default_rng(c.seed)
        n, m, k = train.n_users, train.n_items, c.factors
        d = k + 1
        mu = float(train.global_mean)
        r = train.rating.astype(np.float64) - mu
        by_user = sp.csr_matrix((r, (train.user, train.item)), shape=(n, m))
        by_item = by_user.T.tocsr()
        by_user.sort_indices()
        by_item.sort_indices()
        tu, ti = train.user.astype(np.int64), train.item.astype(np.int64)
        U = np.zeros((n, d))  # θ_u = [u_u, b_u]
        V = np.zeros((m, d))  # φ_i = [v_i, c_i]
        U[:, :k] = rng.normal(0.0, c.init_std, (n, k))
        V[:, :k] = rng.normal(0.0, c.init_std, (m, k))
        alpha = c.alpha
        nu0 = float(d)
        keep = min(c.keep or c.samples, c.samples)
        # stored sweeps: evenly spaced, ending at the last one
        slots = c.samples - 1 - np.floor(np.arange(keep)[::-1] * (c.samples / keep)).astype(int)
        Us = np.empty((n, keep, d + 1), np.float32)
        Vs = np.empty((m, keep, d + 1), np.float32)
        alphas, valid_hist = [], []
        if valid is not None and len(valid):
            vu, vi, vr = valid.user.astype(np.int64), valid.item.astype(np.int64), valid.rating.astype(np.float64)
            vsum = np.zeros(len(vu))
        design = np.ones((max(n, m), d))
        total = c.burn_in + c.samples
        bar = Bar(f"{self.name} sweeps", total=total)
        stored = 0
        for sweep in range(total):
            mu_u, lam_u = sample_normal_wishart(rng, U, c.beta0, c.w0, nu0)
            mu_v, lam_v = sample_normal_wishart(rng, V, c.beta0, c.w0, nu0)
            # users given items: design [v_i, 1], offset c_i
            Yv = design[:m]
            Yv[:, :k] = V[:, :k]
            sample_rows(by_user.indptr, by_user.indices, by_user.data, V[:, k].copy(), Yv,
                        lam_u, lam_u @ mu_u, alpha, rng.standard_normal((n, d)), U)
            # items given users: design [u_u, 1], offset b_u
            Yu = design[:n]
            Yu[:, :k] = U[:, :k]
            sample_rows(by_item.indptr, by_item.indices, by_item.data, U[:, k].copy(), Yu,
                        lam_v, lam_v @ mu_v, alpha, rng.standard_normal((m, d)), V)
            if c.sample_alpha:
                err = r - pair_scores(tu, ti, U, V)
                alpha = rng.gamma(1.0 + 0.5 * len(r), 1.0 / (1.0 + 0.5 * float(err @ err)))
            alphas.append(alpha)
            s = sweep - c.burn_in
            if s >= 0:
                if stored < keep and s == slots[stored]:
                    Us[:, stored] = np.column_stack([U, np.ones(n)])
                    Vs[:, stored] = np.column_stack([V[:, :k], np.ones(m), V[:, k]])
                    stored += 1
                if valid is not None and len(valid):
                    vsum += pair_scores(vu, vi, U, V)
                    est = np.clip(mu + vsum / (s + 1), train.rating.min(), train.rating.max())
                    valid_hist.append(float(np.sqrt(np.mean((est - vr) ** 2))))
            bar.update(alpha=alpha)
        bar.close()
        self.user_samples_ = Us
        self.item_samples_ = Vs
        self.global_mean_ = mu
        self.min_rating_ = float(train.rating.min())
        self.max_rating_ = float(train.rating.max())
        self.alpha_history_ = np.asarray(alphas)
        self.valid_rmse_history_ = np.asarray(valid_hist)

    # ---- scoring -------------------------------------------------------------------------
    def _flat(self, which: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        S = which if rows is None else which[rows]
        return S.reshape(S.shape[0], -1)

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        keep = self.user_samples_.shape[1]
        s = self._flat(self.user_samples_, users) @ self._flat(self.item_samples_, items).T
        return s / np.float32(keep) + np.float32(self.global_mean_)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Clipped posterior-mean rating estimates for (user, item) pairs; NaN for unknown users."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        known = (users >= 0) & (users < self.n_users_)
        out = np.full(len(users), np.nan, np.float32)
        u, i = users[known], items[known]
        keep = self.user_samples_.shape[1]
        est = np.empty(len(u), np.float32)
        for lo in range(0, len(u), 4096):  # bounded temporaries: 4096 × keep × (k+2) floats
            part = slice(lo, lo + 4096)
            est[part] = np.einsum("nf,nf->n", self._flat(self.user_samples_, u[part]),
                                  self._flat(self.item_samples_, i[part]))
        out[known] = np.clip(est / keep + self.global_mean_, self.min_rating_, self.max_rating_)
        return out

    # ---- optional abilities ------------------------------------------------------------
    def item_vectors(self) -> np.ndarray:
        """(n_items, keep·(factors+2)) every kept sample's item vector side by side."""
        return self._flat(self.item_samples_, None)

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(len(users), keep·(factors+2)): user·item is the posterior-mean score minus μ."""
        keep = self.user_samples_.shape[1]
        return self._flat(self.user_samples_, np.asarray(users, np.int64)) / np.float32(keep)
