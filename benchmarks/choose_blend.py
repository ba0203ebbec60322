"""`python -m benchmarks.choose_blend --out configs/blend.msr-75.json`: choose a `blend` on msr-75's
validation carve (never its test part).

Each candidate part is fitted once on the carve's training part (`recstack.tune.tuning_split`:
the same stratified 75/25-by-item rule applied to msr-75's training part); its scores for the
validation users are standardised per user over unseen items, as `blend` does. Weights are then
chosen by coordinate ascent over a grid, maximising validation NDCG@10 with msr-75's candidate
rule (items seen in the carve's training part, the user's training items removed). The written
config carries a `chosen` key: protocol, carve, trials, seed, metric, value, commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recstack import metrics as M
from recstack.models.base import make_model
from recstack.models.config import read_config_file
from recstack.models.ease_als import standardize_unseen
from recstack.recommend import top_k_from_scores
from recstack.tune import carve_rule, tuning_split

ROOT = Path(__file__).resolve().parent.parent
GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)


def candidates() -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (model, config): the msr-75 configs of the strong top-N models, and `hybrid`."""
    ease_als = read_config_file(ROOT / "configs" / "ease-als.msr-75.json")
    ease = {k: ease_als[k] for k in ("lambda_", "binary", "side_weight", "side_year_bucket")}
    als = {k: ease_als[k] for k in ("factors", "epochs", "reg", "alpha", "confidence", "solver", "cg_steps", "seed")}
    return {
        "ease": ("ease", ease),
        "als": ("als", {**als, "mode": "implicit"}),
        "rp3beta": ("rp3beta", read_config_file(ROOT / "configs" / "rp3beta.msr-75.json")),
        "slim": ("slim", read_config_file(ROOT / "configs" / "slim.msr-75.json")),
        "hybrid": ("hybrid", {"item_features": "genres,year", "user_features": "auto", "epochs": 30}),
        "hybrid-kg": ("hybrid", {"item_features": "genres,year,kg", "user_features": "auto", "epochs": 30}),
        "hybrid-text": ("hybrid", {"item_features": "genres,year,text", "user_features": "auto", "epochs": 30}),
        "cdae": ("cdae", read_config_file(ROOT / "configs" / "cdae.msr-75.json")),
        "multvae": ("multvae", read_config_file(ROOT / "configs" / "multvae.msr-75.json")),
    }


def ndcg(z: np.ndarray, seen, mask: np.ndarray, relevant, k: int = 10) -> float:
    s = np.where(mask[None, :], z, -np.inf)
    s[seen.nonzero()] = -np.inf
    idx, _ = top_k_from_scores(s, k)
    hits, n_rel = M.hit_matrix(idx, relevant)
    return M.ndcg_at_k(hits, n_rel, k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parts", nargs="+", default=["ease", "als", "rp3beta", "slim", "hybrid", "hybrid-kg"],
                    help=f"candidate part names, of: {', '.join(candidates())}")
    ap.add_argument("--out", help="write the chosen config here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", help="folder keeping each part's validation scores (.npy) between runs")
    ap.add_argument("--start", nargs="+", metavar="PART=WEIGHT", help="starting weights (default: the first part ×1)")
    args = ap.parse_args(argv)
    split = tuning_split("msr-75", seed=args.seed)
    users = np.intersect1d(np.unique(split.train.user), np.unique(split.valid.user))
    seen = split.train.csr[users]
    mask = split.train.item_popularity > 0
    relevant = split.valid.csr[users]
    table = candidates()
    z: dict[str, np.ndarray] = {}
    for name in args.parts:
        model, config = table[name]
        t0 = time.perf_counter()
        cached = Path(args.cache) / f"{name}-seed{args.seed}.npy" if args.cache else None
        if cached is not None and cached.exists():
            z[name] = np.load(cached, allow_pickle=False)
        else:
            m = make_model(model, {**config, **({"seed": args.seed} if "seed" in config else {})}).fit(split.train)
            z[name] = standardize_unseen(m.score(users), seen).astype(np.float32)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, z[name])
        print(f"{name}: validation ndcg@10 {ndcg(z[name], seen, mask, relevant):.4f} "
              f"(fit {time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
    names = list(z)
    weights = {n: (1.0 if n == names[0] else 0.0) for n in names}
    if args.start:  # start the ascent from given weights (e.g. an earlier choice)
        weights.update({n: float(w) for n, w in (kv.split("=") for kv in args.start)})

    def value(w: dict[str, float]) -> float:
        total = sum(w[n] * z[n] for n in names if w[n] > 0)
        return ndcg(total, seen, mask, relevant)

    best, trials = value(weights), 1
    improved = True
    while improved:
        improved = False
        for n in names:
            for g in GRID:
                if g == weights[n]:
                    continue
                cand = {**weights, n: g}
                if not any(v > 0 for v in cand.values()):
                    continue
                v, trials = value(cand), trials + 1
                if v > best + 1e-6:
                    best, weights, improved = v, cand, True
        print(f"pass: ndcg@10 {best:.4f} weights {weights}", file=sys.stderr, flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    config = {
        "parts": [{"model": table[n][0], "weight": weights[n], "config": table[n][1]} for n in names if weights[n] > 0],
        "standardize": True,
        "chosen": {"protocol": "msr-75",
                   "carve": carve_rule("msr-75"),
                   "trials": trials, "seed": args.seed, "metric": "ndcg@10", "value": round(best, 4),
                   "commit": commit, "candidates": names,
                   "part_values": {n: round(ndcg(z[n], seen, mask, relevant), 4) for n in names}},
    }
    text = json.dumps(config, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
