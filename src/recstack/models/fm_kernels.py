"""numba kernels of the factorization machine (`fm.py`) and their slow NumPy twins.

Model (Rendle 2010): for a row x = [user block row u | item block row i],
    ŷ(x) = w0 + Σ_j w_j x_j + ½ Σ_f [(Σ_j v_jf x_j)² − Σ_j v_jf² x_j²]
         = w0 + B_u + B_i + Q_u · Q_i,
with Q_u = Σ_{j∈u} x_j v_j (k,), B_u = Σ_{j∈u} w_j x_j + ½ Σ_f (Q_uf² − Σ_{j∈u} x_j² v_jf²), and
likewise for the item. ŷ is linear in each single parameter θ: ŷ = g + θ·h(x), with
h = x_j for w_j and h = x_j (q_f − x_j v_jf) for v_jf, q_f = Q_uf + Q_if.

`gibbs_sweep`: one sweep of libFM's MCMC (Rendle 2012 "Factorization Machines with libFM";
Freudenthaler, Schmidt-Thieme & Rendle 2011): w0, then every w_j, then factor by factor every
v_jf, each drawn from its Gaussian conditional N((α Σ h(e + θh) + λμ)/(α Σh² + λ), 1/(α Σh² + λ))
with e = y − ŷ. The kernel works on the blocks, not on rating rows (Rendle 2013): for a user-
block parameter every row of user u shares x_j and Q_uf, so Σ h² and Σ h e need only per-user
sums over the user's rows (count, Σ Q_if, Σ Q_if², Σ e, Σ e·Q_if), updated in O(1) per user
when θ moves. `gibbs_sweep_slow` is the plain libFM algorithm on explicit rows: before each
parameter it recomputes ŷ of every row from scratch with the FM formula.

`sgd_epoch` (squared error, w0 fixed at the training mean) and `bpr_epoch` (BPR, Rendle et al.
2009) are plain SGD over rows; `*_slow` are their twins. With one-hot ids only, `sgd_epoch` is
`mf.sgd_epoch` of `BiasedMF` (tests check it).
"""

from __future__ import annotations

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
def _factor_pass(cptr, cidx, cval, group, V, f, Q, Q_other, B, eptr, erows, partner, e, alpha,
                 mu_v, lam_v, z):  # pragma: no cover
    """Draw column f of one block's V; keeps Q[:, f], B and the residuals e up to date."""
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
            qo = Q_other[partner[r], f]
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
            e[r] -= dB + dq * Q_other[partner[r], f]


@numba.njit(cache=True, nogil=True)
def gibbs_sweep(ru, ri, e, uptr, urows, iptr, irows, XuT, XiT, gu, gi, w0, wu, wi, Vu, Vi, Qu, Qi,
                Bu, Bi, mu_w, lam_w, mu_v, lam_v, alpha, lam0, z):  # pragma: no cover - numba
    """One Gibbs sweep over all FM parameters, in place; returns the new w0.

    ru, ri (N,) row user/item; e (N,) residuals y − ŷ (kept current); uptr/urows, iptr/irows:
    each user's / item's rows; XuT, XiT: (ptr, idx, val) of the transposed blocks (feature →
    entities); gu (Fu,), gi (Fi,) prior group of each feature; wu (Fu,), Vu (Fu, k) and the item
    side likewise; Qu (n_users, k), Bu (n_users,) their caches; mu_w, lam_w (G,), mu_v, lam_v
    (G, k) priors; z: 1 + (Fu + Fi)(k + 1) standard normals, consumed in that order.
    """
    Fu, k = Vu.shape
    Fi = Vi.shape[0]
    N = len(e)
    she = 0.0
    for r in range(N):
        she += e[r]
    prec = alpha * N + lam0
    new = (alpha * (she + w0 * N)) / prec + z[0] / np.sqrt(prec)
    for r in range(N):
        e[r] -= new - w0
    w0 = new
    at = 1
    _linear_pass(XuT[0], XuT[1], XuT[2], gu, wu, Bu, uptr, urows, e, alpha, mu_w, lam_w, z[at:at + Fu])
    at += Fu
    _linear_pass(XiT[0], XiT[1], XiT[2], gi, wi, Bi, iptr, irows, e, alpha, mu_w, lam_w, z[at:at + Fi])
    at += Fi
    for f in range(k):
        _factor_pass(XuT[0], XuT[1], XuT[2], gu, Vu, f, Qu, Qi, Bu, uptr, urows, ri, e, alpha,
                     mu_v, lam_v, z[at:at + Fu])
        at += Fu
        _factor_pass(XiT[0], XiT[1], XiT[2], gi, Vi, f, Qi, Qu, Bi, iptr, irows, ru, e, alpha,
                     mu_v, lam_v, z[at:at + Fi])
        at += Fi
    return w0


def fm_predict_slow(Xu: sp.csr_matrix, Xi: sp.csr_matrix, ru: np.ndarray, ri: np.ndarray, w0: float,
                    wu: np.ndarray, wi: np.ndarray, Vu: np.ndarray, Vi: np.ndarray) -> np.ndarray:
    """The FM formula on the explicit rows [Xu[ru] | Xi[ri]]: (N,) predictions."""
    X = sp.hstack([Xu[ru], Xi[ri]], format="csr")
    w = np.concatenate([wu, wi])
    V = np.vstack([Vu, Vi])
    XV = X @ V
    return w0 + X @ w + 0.5 * ((XV ** 2).sum(axis=1) - (X.multiply(X) @ (V ** 2)).sum(axis=1))


def gibbs_sweep_slow(Xu, Xi, ru, ri, y, gu, gi, w0, wu, wi, Vu, Vi, mu_w, lam_w, mu_v, lam_v, alpha,
                     lam0, z):
    """Plain libFM MCMC on explicit rows: same order, same draws as `gibbs_sweep`; returns w0."""
    Xu_rows = Xu[ru].toarray()
    Xi_rows = Xi[ri].toarray()

    def resid() -> np.ndarray:
        return y - fm_predict_slow(Xu, Xi, ru, ri, w0, wu, wi, Vu, Vi)

    def draw(theta: float, h: np.ndarray, mu: float, lam: float, zz: float) -> float:
        e = resid()
        prec = alpha * float(h @ h) + lam
        return (alpha * float(h @ (e + theta * h)) + lam * mu) / prec + zz / np.sqrt(prec)

    w0 = draw(w0, np.ones(len(y)), 0.0, lam0, z[0])
    at = 1
    for rows, w, g in ((Xu_rows, wu, gu), (Xi_rows, wi, gi)):
        for j in range(len(w)):
            w[j] = draw(w[j], rows[:, j], mu_w[g[j]], lam_w[g[j]], z[at])
            at += 1
    for f in range(Vu.shape[1]):
        for rows, V, g in ((Xu_rows, Vu, gu), (Xi_rows, Vi, gi)):
            for j in range(len(V)):
                q = Xu_rows @ Vu[:, f] + Xi_rows @ Vi[:, f]
                h = rows[:, j] * (q - rows[:, j] * V[j, f])
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

        def item_part(x: np.ndarray, q: np.ndarray) -> float:
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
