"""numba kernels of the factorization machine (`fm.py`) and their slow NumPy twins.

Model (Rendle 2010): for a row x = [user block row u | item block row i | date block row d],
    ŷ(x) = w0 + Σ_j w_j x_j + ½ Σ_f [(Σ_j v_jf x_j)² − Σ_j v_jf² x_j²]
         = w0 + Σ_b B_b + Σ_{b<c} Q_b · Q_c        (b, c over the row's blocks)
with Q_u = Σ_{j∈u} x_j v_j (k,), B_u = Σ_{j∈u} w_j x_j + ½ Σ_f (Q_uf² − Σ_{j∈u} x_j² v_jf²), and
likewise for the other blocks. ŷ is linear in each single parameter θ: ŷ = g + θ·h(x), with
h = x_j for w_j and h = x_j (q_f − x_j v_jf) for v_jf, q_f = Σ_b Q_bf.

`gibbs_sweep`: one sweep of libFM's MCMC (Rendle 2012 "Factorization Machines with libFM";
Freudenthaler, Schmidt-Thieme & Rendle 2011): w0, then every w_j, then factor by factor every
v_jf, each drawn from its Gaussian conditional N((α Σ h(e + θh) + λμ)/(α Σh² + λ), 1/(α Σh² + λ))
with e = y − ŷ. The kernels work on the blocks, not on rating rows (Rendle 2013, "Scaling
factorization machines to relational data"): for a user-block parameter every row of user u
shares x_j and Q_uf, so Σ h² and Σ h e need only per-user sums over the user's rows (count,
Σ o, Σ o², Σ e, Σ e·o with o the other blocks' Q_f in the row), updated in O(1) per user when
θ moves. `gibbs_sweep_slow` is the plain libFM algorithm on explicit rows: before each
parameter it recomputes ŷ of every row from scratch with the FM formula.

`sgd_epoch` (squared error, w0 fixed at the training mean) and `bpr_epoch` (BPR, Rendle et al.
2009) are plain SGD over rows; `*_slow` are their twins. With one-hot ids only, `sgd_epoch` is
`mf.sgd_epoch` of `BiasedMF` (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp


# ---- Gibbs sampling ---------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _linear_pass(cptr, cidx, cval, group, w, B, eptr, erows, e, alpha, mu_w, lam_w, z):  # pragma: no cover
    """Draw every w_j of one block (columns cptr/cidx/cval: entities holding feature j)."""
    n = len(eptr) - 1
    E = np.zeros(n)
    cnt = np.zeros(n)
    for a in range(n):
        cnt[a] = eptr[a + 1] - eptr[a]
        for t in range(eptr[a], eptr[a + 1]):
            E[a] += e[erows[t]]
    B_old = B.copy()
    for j in range(len(cptr) - 1):
        g = group[j]
        shh = 0.0
        she = 0.0
        for t in range(cptr[j], cptr[j + 1]):
            a = cidx[t]
            x = cval[t]
            shh += x * x * cnt[a]
            she += x * E[a]
        prec = alpha * shh + lam_w[g]
        mean = (alpha * (she + w[j] * shh) + lam_w[g] * mu_w[g]) / prec
        new = mean + z[j] / np.sqrt(prec)
        d = new - w[j]
        w[j] = new
        for t in range(cptr[j], cptr[j + 1]):
            a = cidx[t]
            x = cval[t]
            E[a] -= d * x * cnt[a]
            B[a] += d * x
    for a in range(n):
        dB = B[a] - B_old[a]
        for t in range(eptr[a], eptr[a + 1]):
            e[erows[t]] -= dB


@numba.njit(cache=True, nogil=True)
def _factor_pass(cptr, cidx, cval, group, V, f, Q, other, B, eptr, erows, e, alpha, mu_v, lam_v,
                 z):  # pragma: no cover
    """Draw column f of one block's V; keeps Q[:, f], B and the residuals e up to date.

    other (N,): per row, the sum of the *other* blocks' Q[entity of the row, f] — the partner
    of this block's Q_af in the row's pairwise term."""
    n = len(eptr) - 1
    cnt = np.zeros(n)
    S1 = np.zeros(n)
    S2 = np.zeros(n)
    E = np.zeros(n)
    G = np.zeros(n)
    for a in range(n):
        cnt[a] = eptr[a + 1] - eptr[a]
        for t in range(eptr[a], eptr[a + 1]):
            r = erows[t]
            qo = other[r]
            S1[a] += qo
            S2[a] += qo * qo
            E[a] += e[r]
            G[a] += e[r] * qo
    q_old = Q[:, f].copy()
    dR = np.zeros(n)
    for j in range(len(cptr) - 1):
        g = group[j]
        v = V[j, f]
        shh = 0.0
        she = 0.0
        for t in range(cptr[j], cptr[j + 1]):
            a = cidx[t]
            x = cval[t]
            s = Q[a, f] - x * v
            shh += x * x * (s * s * cnt[a] + 2.0 * s * S1[a] + S2[a])
            she += x * (s * E[a] + G[a])
        prec = alpha * shh + lam_v[g, f]
        mean = (alpha * (she + v * shh) + lam_v[g, f] * mu_v[g, f]) / prec
        new = mean + z[j] / np.sqrt(prec)
        d = new - v
        V[j, f] = new
        for t in range(cptr[j], cptr[j + 1]):
            a = cidx[t]
            x = cval[t]
            s = Q[a, f] - x * v
            E[a] -= d * x * (s * cnt[a] + S1[a])
            G[a] -= d * x * (s * S1[a] + S2[a])
            Q[a, f] += d * x
            dR[a] += x * x * (new * new - v * v)
    for a in range(n):
        dq = Q[a, f] - q_old[a]
        dB = 0.5 * (Q[a, f] * Q[a, f] - q_old[a] * q_old[a] - dR[a])
        B[a] += dB
        for t in range(eptr[a], eptr[a + 1]):
            r = erows[t]
            e[r] -= dB + dq * other[r]


@dataclass
class GibbsBlock:
    """One relation block for `gibbs_sweep`: entity of each row `ent` (N,); `eptr`/`erows` the
    rows of each entity; `XT` (ptr, idx, val) of the transposed design (feature → entities);
    `group` (F,) prior group per feature; parameters `w` (F,), `V` (F, k); caches `Q` = X V
    (n_ent, k) and `B` = X w + ½ Σ_f (Q² − X² V²) (n_ent,)."""

    ent: np.ndarray
    eptr: np.ndarray
    erows: np.ndarray
    XT: tuple[np.ndarray, np.ndarray, np.ndarray]
    group: np.ndarray
    w: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    B: np.ndarray


def gibbs_sweep(blocks: list[GibbsBlock], e: np.ndarray, w0: float, mu_w: np.ndarray, lam_w: np.ndarray,
                mu_v: np.ndarray, lam_v: np.ndarray, alpha: float, lam0: float, z: np.ndarray) -> float:
    """One Gibbs sweep over all FM parameters, in place (w, V, Q, B of each block, residuals e
    (N,) = y − ŷ kept current); returns the new w0.

    Order: w0, every block's w, then for each factor f every block's V[:, f]. mu_w, lam_w (G,),
    mu_v, lam_v (G, k) the priors; z: 1 + Σ_b F_b (k + 1) standard normals, consumed in that order.
    """
    N = len(e)
    prec = alpha * N + lam0
    new = alpha * (e.sum() + w0 * N) / prec + z[0] / np.sqrt(prec)
    e -= new - w0
    at = 1
    for b in blocks:
        F = len(b.w)
        _linear_pass(*b.XT, b.group, b.w, b.B, b.eptr, b.erows, e, alpha, mu_w, lam_w, z[at:at + F])
        at += F
    k = blocks[0].V.shape[1]
    for f in range(k):
        total = np.zeros(N)
        for b in blocks:
            total += b.Q[b.ent, f]
        for b in blocks:
            F = len(b.w)
            other = total - b.Q[b.ent, f]
            _factor_pass(*b.XT, b.group, b.V, f, b.Q, other, b.B, b.eptr, b.erows, e, alpha,
                         mu_v, lam_v, z[at:at + F])
            total = other + b.Q[b.ent, f]
            at += F
    return new


def fm_predict_slow(Xs: list[sp.csr_matrix], ents: list[np.ndarray], w0: float, ws: list[np.ndarray],
                    Vs: list[np.ndarray]) -> np.ndarray:
    """The FM formula on the explicit rows [X_1[ent_1] | X_2[ent_2] | …]: (N,) predictions."""
    X = sp.hstack([Xb[eb] for Xb, eb in zip(Xs, ents)], format="csr")
    w = np.concatenate(ws)
    V = np.vstack(Vs)
    XV = X @ V
    return w0 + X @ w + 0.5 * ((XV ** 2).sum(axis=1) - (X.multiply(X) @ (V ** 2)).sum(axis=1))


def gibbs_sweep_slow(Xs, ents, y, groups, w0, ws, Vs, mu_w, lam_w, mu_v, lam_v, alpha, lam0, z):
    """Plain libFM MCMC on explicit rows: same order, same draws as `gibbs_sweep`; returns w0."""
    rows = [Xb[eb].toarray() for Xb, eb in zip(Xs, ents)]

    def draw(theta: float, h: np.ndarray, mu: float, lam: float, zz: float) -> float:
        e = y - fm_predict_slow(Xs, ents, w0, ws, Vs)
        prec = alpha * float(h @ h) + lam
        return (alpha * float(h @ (e + theta * h)) + lam * mu) / prec + zz / np.sqrt(prec)

    w0 = draw(w0, np.ones(len(y)), 0.0, lam0, z[0])
    at = 1
    for R, w, g in zip(rows, ws, groups):
        for j in range(len(w)):
            w[j] = draw(w[j], R[:, j], mu_w[g[j]], lam_w[g[j]], z[at])
            at += 1
    for f in range(Vs[0].shape[1]):
        for R, V, g in zip(rows, Vs, groups):
            for j in range(len(V)):
                q = sum(Rb @ Vb[:, f] for Rb, Vb in zip(rows, Vs))
                h = R[:, j] * (q - R[:, j] * V[j, f])
                V[j, f] = draw(V[j, f], h, mu_v[g[j], f], lam_v[g[j], f], z[at])
                at += 1
    return w0


# ---- SGD ----------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _side(ptr, idx, val, a, w, V, q):  # pragma: no cover - numba
    """Fill q with Σ x v over entity a's features; return (Σ w x, Σ_f Σ x² v²)."""
    q[:] = 0.0
    lin = 0.0
    sq = 0.0
    for t in range(ptr[a], ptr[a + 1]):
        j = idx[t]
        x = val[t]
        lin += w[j] * x
        for f in range(V.shape[1]):
            vx = V[j, f] * x
            q[f] += vx
            sq += vx * vx
    return lin, sq


@numba.njit(cache=True, nogil=True)
def _step(ptr, idx, val, a, w, V, qa, qb, g, lr, reg, reg_bias):  # pragma: no cover - numba
    """w_j += lr(g·x_j − reg_bias·w_j), v_jf += lr(g·x_j(qa_f + qb_f − x_j v_jf) − reg·v_jf)
    for entity a's features (g = the loss derivative, ±1 folded in)."""
    for t in range(ptr[a], ptr[a + 1]):
        j = idx[t]
        x = val[t]
        w[j] += lr * (g * x - reg_bias * w[j])
        for f in range(V.shape[1]):
            v = V[j, f]
            V[j, f] = v + lr * (g * x * (qa[f] + qb[f] - x * v) - reg * v)


@numba.njit(cache=True, nogil=True)
def sgd_epoch(ru, ri, y, Xu, Xi, w0, wu, wi, Vu, Vi, lr, reg, reg_bias):  # pragma: no cover - numba
    """One SGD pass of squared error over rows in the order given (w0 fixed); returns train RMSE.

    Xu, Xi: (ptr, idx, val) CSR of the user / item blocks. Every gradient of a row uses the
    parameters as they were before that row (as `mf.sgd_epoch`).
    """
    k = Vu.shape[1]
    qu = np.zeros(k)
    qi = np.zeros(k)
    total = 0.0
    for r in range(len(y)):
        u = ru[r]
        i = ri[r]
        lu, su = _side(Xu[0], Xu[1], Xu[2], u, wu, Vu, qu)
        li, si = _side(Xi[0], Xi[1], Xi[2], i, wi, Vi, qi)
        pred = w0 + lu + li - 0.5 * (su + si)
        for f in range(k):
            q = qu[f] + qi[f]
            pred += 0.5 * q * q
        err = y[r] - pred
        total += err * err
        _step(Xu[0], Xu[1], Xu[2], u, wu, Vu, qu, qi, err, lr, reg, reg_bias)
        _step(Xi[0], Xi[1], Xi[2], i, wi, Vi, qu, qi, err, lr, reg, reg_bias)
    return np.sqrt(total / max(len(y), 1))


def sgd_epoch_slow(ru, ri, y, Xu, Xi, w0, wu, wi, Vu, Vi, lr, reg, reg_bias):
    """Plain twin of `sgd_epoch` on scipy CSR blocks: the FM formula and its gradient per row."""
    total = 0.0
    for u, i, target in zip(ru, ri, y):
        xu, xi = Xu[u].toarray().ravel(), Xi[i].toarray().ravel()
        q = xu @ Vu + xi @ Vi
        pred = (w0 + xu @ wu + xi @ wi + 0.5 * (q @ q - (xu ** 2) @ (Vu ** 2).sum(axis=1)
                                                 - (xi ** 2) @ (Vi ** 2).sum(axis=1)))
        err = target - pred
        total += err * err
        for x, w, V in ((xu, wu, Vu), (xi, wi, Vi)):
            nz = np.flatnonzero(x)
            grad_v = x[nz, None] * (q[None, :] - x[nz, None] * V[nz])
            w[nz] += lr * (err * x[nz] - reg_bias * w[nz])
            V[nz] += lr * (err * grad_v - reg * V[nz])
    return np.sqrt(total / max(len(y), 1))


@numba.njit(cache=True, nogil=True)
def bpr_epoch(ru, pos, neg, Xu, Xi, wi, Vu, Vi, lr, reg, reg_bias):  # pragma: no cover - numba
    """One BPR pass over (user, positive, negative) triples; returns mean −ln σ(ŷ_ui − ŷ_uj).

    w0, user linear weights and the user-only pairwise terms cancel in ŷ_ui − ŷ_uj and get no
    gradient. Gradients use the parameters as they were before the triple.
    """
    k = Vu.shape[1]
    qu = np.zeros(k)
    qi = np.zeros(k)
    qj = np.zeros(k)
    dummy = np.zeros(Vu.shape[0])
    loss = 0.0
    for r in range(len(ru)):
        u, i, j = ru[r], pos[r], neg[r]
        _side(Xu[0], Xu[1], Xu[2], u, dummy, Vu, qu)
        li, si = _side(Xi[0], Xi[1], Xi[2], i, wi, Vi, qi)
        lj, sj = _side(Xi[0], Xi[1], Xi[2], j, wi, Vi, qj)
        diff = li - lj - 0.5 * (si - sj)
        for f in range(k):
            diff += 0.5 * (qi[f] * qi[f] - qj[f] * qj[f]) + qu[f] * (qi[f] - qj[f])
        if diff > 0:
            loss += np.log1p(np.exp(-diff))
            g = np.exp(-diff) / (1.0 + np.exp(-diff))
        else:
            loss += -diff + np.log1p(np.exp(diff))
            g = 1.0 / (1.0 + np.exp(diff))
        for t in range(Xu[0][u], Xu[0][u + 1]):
            a = Xu[1][t]
            x = Xu[2][t]
            for f in range(k):
                v = Vu[a, f]
                Vu[a, f] = v + lr * (g * x * (qi[f] - qj[f]) - reg * v)
        _step(Xi[0], Xi[1], Xi[2], i, wi, Vi, qu, qi, g, lr, reg, reg_bias)
        _step(Xi[0], Xi[1], Xi[2], j, wi, Vi, qu, qj, -g, lr, reg, reg_bias)
    return loss / max(len(ru), 1)


def bpr_epoch_slow(ru, pos, neg, Xu, Xi, wi, Vu, Vi, lr, reg, reg_bias):
    """Plain twin of `bpr_epoch` on scipy CSR blocks."""
    loss = 0.0
    for u, i, j in zip(ru, pos, neg):
        xu = Xu[u].toarray().ravel()
        xi, xj = Xi[i].toarray().ravel(), Xi[j].toarray().ravel()
        qu, qi, qj = xu @ Vu, xi @ Vi, xj @ Vi

        def item_part(x: np.ndarray, q: np.ndarray, qu: np.ndarray = qu) -> float:
            return float(x @ wi + 0.5 * (q @ q - (x ** 2) @ (Vi ** 2).sum(axis=1)) + qu @ q)

        diff = item_part(xi, qi) - item_part(xj, qj)
        loss += float(np.logaddexp(0.0, -diff))
        g = 1.0 / (1.0 + np.exp(diff))
        nz = np.flatnonzero(xu)
        Vu[nz] += lr * (g * xu[nz, None] * (qi - qj)[None, :] - reg * Vu[nz])
        for sign, x, q in ((1.0, xi, qi), (-1.0, xj, qj)):
            for a in np.flatnonzero(x):
                wi[a] += lr * (sign * g * x[a] - reg_bias * wi[a])
                Vi[a] += lr * (sign * g * x[a] * (qu + q - x[a] * Vi[a]) - reg * Vi[a])
    return loss / max(len(ru), 1)
