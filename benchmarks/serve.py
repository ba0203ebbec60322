"""`python -m benchmarks.serve [--only ann|wrk|inproc] [--seconds 60] [--rounds 1]`: the service's README figures.

ann: faiss HNSW (M=32) over the MIPS→L2 reduction vs exact brute force (`faiss.IndexFlatIP`), one
query at a time on one thread: recall@10 and queries per second, on 100,000 synthetic 64-d
factor-shaped vectors (per-dimension scale (j+1)^-0.8, log-normal norms) and on the item vectors
of the ML-100K biased-mf; raw inner-product HNSW shown as the baseline the reduction beats.
wrk: `recstack serve` (1 worker, SQLite) on the ML-100K biased-mf; wrk 2 threads, 8 connections,
90% GET recommendations k=10 over random known users, 10% event POSTs (benchmarks/serve_lua/mixed.lua);
then, under the same wrk settings, the calibration reference `bare_app` (a bare FastAPI route doing
only the numpy top-k), so the service's requests/s is also reported as a ratio to bare FastAPI.
inproc: both apps driven in this process through ASGI (CPU µs per request of the same mix, no HTTP
parsing or sockets) — the service's cost relative to bare FastAPI, little disturbed by a busy machine.
Results go to benchmarks/results/serve.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402  (the [serve] extra; annotations of bare_app's routes)
from fastapi.responses import Response  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # in-process parts measure this checkout, as the servers started below do
KEY = "bench-key"
RAW_BASELINE = "--raw-baseline" in sys.argv


def _qps(search, queries: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    found = np.vstack([search(q) for q in queries])
    return found, len(queries) / (time.perf_counter() - t0)


def ann_case(name: str, items: np.ndarray, queries: np.ndarray, efs: list[int], m: int = 32,
             ef_construction: int = 400, raw_baseline: bool = True) -> dict:
    """Recall@10 and QPS of HNSW+reduction (per efSearch) and raw-IP HNSW against IndexFlatIP."""
    import faiss

    from recstack.serve.index import ItemIndex, recall_at_k

    faiss.omp_set_num_threads(1)
    items = np.ascontiguousarray(items, np.float32)
    queries = np.ascontiguousarray(queries, np.float32)
    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)
    truth, flat_qps = _qps(lambda q: flat.search(q[None, :], 10)[1][0], queries)
    t0 = time.perf_counter()
    index = ItemIndex(items, m=m, ef_construction=ef_construction)
    build = time.perf_counter() - t0
    rows = []
    for ef in efs:
        index.ef_search = ef
        found, qps = _qps(lambda q: index.search(q, 10)[0], queries)
        rows.append({"ef_search": ef, "recall@10": round(recall_at_k(found, truth), 4), "qps": round(qps, 1),
                     "x_flat": round(qps / flat_qps, 2)})
        print(f"{name} ef={ef}: recall {rows[-1]['recall@10']} at {rows[-1]['x_flat']}x flat", file=sys.stderr)
    raw_rows = []
    raw = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = ef_construction
    if raw_baseline:
        raw.add(items)
    for ef in efs if raw_baseline else []:
        raw.hnsw.efSearch = ef
        found, qps = _qps(lambda q: raw.search(q[None, :], 10)[1][0], queries)
        raw_rows.append({"ef_search": ef, "recall@10": round(recall_at_k(found, truth), 4),
                         "x_flat": round(qps / flat_qps, 2)})
    ok = [r for r in rows if r["recall@10"] >= 0.98 and r["x_flat"] >= 5]
    return {"name": name, "n_items": len(items), "dim": items.shape[1], "queries": len(queries), "m": m,
            "ef_construction": ef_construction, "build_seconds": round(build, 1), "flat_qps": round(flat_qps, 1),
            "hnsw_mips_l2": rows, "hnsw_raw_ip": raw_rows, "target_met": bool(ok), "best": ok[0] if ok else None}


def train_bmf(out: Path) -> Path:
    if not (out / "model.json").exists():
        subprocess.run([sys.executable, "-m", "recstack", "train", "biased-mf", "--out", str(out)], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stderr=subprocess.DEVNULL)
    return out


def run_ann(work: Path) -> list[dict]:
    from recstack.persist import load_model
    from recstack.serve.index import factor_like_vectors

    saved = load_model(train_bmf(work / "bmf"))
    model = saved.model
    users = np.arange(saved.train.n_users)
    out = [ann_case("ml100k-biased-mf", model.item_vectors(), model.user_vectors(users), [16, 32, 64, 128])]
    print(json.dumps(out[-1]), file=sys.stderr)
    # raw inner-product HNSW is built as a baseline only with --raw-baseline (it doubles the build time)
    out.append(ann_case("synthetic-100k-64d", factor_like_vectors(100_000, 64, seed=0),
                        factor_like_vectors(300, 64, seed=1), [128, 256, 384], ef_construction=400,
                        raw_baseline=RAW_BASELINE))
    return out


def bare_app():  # noqa: ANN201
    """The calibration reference: a bare FastAPI app whose recommendation route does only the
    numpy top-k over the biased-mf scores (no store, filters, metadata or metrics); its event route
    accepts the body and answers 201. Served by uvicorn with `--factory` from BENCH_BARE_MODEL."""
    from recstack.persist import load_model

    saved = load_model(os.environ["BENCH_BARE_MODEL"])
    model, train = saved.model, saved.train
    item_ids = [str(i) for i in train.item_ids]
    app = FastAPI()

    @app.get("/users/{user}/recommendations")
    async def recommendations(user: str, k: int = 10) -> Response:
        u = train.user_index[user]
        scores = model.score(np.array([u]))[0]
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        body = json.dumps({"user": user, "items": [{"item": item_ids[i], "score": float(scores[i])} for i in top]})
        return Response(body, media_type="application/json")

    @app.post("/users/{user}/events", status_code=201)
    async def events(user: str, request: Request) -> dict:
        return {"user": user, "stored": len((await request.json())["events"])}

    return app


def _wait_ready(url: str) -> None:
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer {url}")


def _wrk(port: int, seconds: int, env: dict) -> dict:
    import httpx

    for u in range(1, 200):  # warm up
        httpx.get(f"http://127.0.0.1:{port}/users/{u}/recommendations?k=10")
    res = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s",
                          str(ROOT / "benchmarks/serve_lua/mixed.lua"), f"http://127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True, check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith("JSON "))
    figures = json.loads(line[5:])
    figures["errors"] = figures["socket_errors"] + figures["non_2xx"]
    return figures


def _asgi_cpu(app, n: int, post_share: float, seed: int = 0) -> float:  # noqa: ANN001
    """CPU µs per request of an ASGI app driven in this process, without HTTP parsing or sockets:
    `n` requests of the wrk mix (GET k=10 over random known users, `post_share` event posts)."""
    import asyncio
    import random

    async def call(method: str, path: str, query: bytes = b"", body: bytes = b"", headers: tuple = ()) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), *headers, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {}}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = []

        async def receive() -> dict:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    async def run() -> float:
        rng = random.Random(seed)
        post_headers = ((b"content-type", b"application/json"), (b"authorization", f"Bearer {KEY}".encode()))

        async def one(count: int) -> None:
            user = rng.randint(1, 943)
            if rng.random() < post_share:
                body = json.dumps({"events": [{"event_id": f"cpu-{seed}-{count}", "item": str(rng.randint(1, 1682)),
                                               "type": "click"}]}).encode()
                code = await call("POST", f"/users/{user}/events", body=body, headers=post_headers)
            else:
                code = await call("GET", f"/users/{user}/recommendations", b"k=10")
            assert code < 300, code

        async with app.router.lifespan_context(app):
            for count in range(200):  # warm up
                await one(-count - 1)
            t0 = time.process_time()
            for count in range(n):
                await one(count)
            return (time.process_time() - t0) / n * 1e6

    return asyncio.run(run())


def run_inproc(work: Path, n: int = 3000, rounds: int = 3) -> dict:
    """The service's app against the bare reference, driven in this process (CPU time per request,
    no HTTP parsing or sockets): a ratio that a busy machine disturbs far less than wrk's figures."""
    from recstack.serve.app import Settings, create_app

    model = train_bmf(work / "bmf")
    reg = work / "registry"
    os.environ["RECSTACK_API_KEY"] = KEY
    os.environ["BENCH_BARE_MODEL"] = str(model)
    if not (reg / "ACTIVE").exists():
        from recstack.serve.registry import Registry

        Registry(reg).add(model)
    out: dict[str, list[float]] = {}
    for r in range(rounds):
        for share in (0.0, 0.1):
            db = work / f"inproc-{r}-{share}.db"
            service = create_app(Settings(path=str(reg), db=f"sqlite:///{db}"))
            out.setdefault(f"service_post{share}", []).append(round(_asgi_cpu(service, n, share, seed=r), 1))
            out.setdefault(f"bare_post{share}", []).append(round(_asgi_cpu(bare_app(), n, share, seed=r), 1))
    med = {k: float(np.median(v)) for k, v in out.items()}
    record = {"cpu_us_per_request": out, "requests_per_run": n,
              "gets_only_vs_bare": round(med["service_post0.0"] / med["bare_post0.0"], 2),
              "mix_vs_bare": round(med["service_post0.1"] / med["bare_post0.1"], 2)}
    print(f"in-process CPU per request (median µs): {med}", file=sys.stderr)
    return record


def _serve(cmd: list[str], env: dict, port: int, ready: str) -> subprocess.Popen:
    server = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{ready}")
    except BaseException:
        server.terminate()
        raise
    return server


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(10)


def run_wrk(work: Path, seconds: int, rounds: int = 1) -> dict:
    """The service under wrk, then the bare FastAPI reference under the same wrk settings, `rounds`
    times alternating; figures per run, the service's worst run decides the target."""
    import importlib.util

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    model = train_bmf(work / "bmf")
    reg = work / "registry"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "RECSTACK_API_KEY": KEY,
           "BENCH_BARE_MODEL": str(model)}
    if not (reg / "ACTIVE").exists():
        subprocess.run([sys.executable, "-m", "recstack", "registry", "add", str(reg), str(model)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    port = 18000 + os.getpid() % 1000
    service_runs, bare_runs = [], []
    load = os.getloadavg()
    for _ in range(rounds):
        db = work / "bench-events.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        server = _serve([sys.executable, "-m", "recstack", "serve", str(reg), "--db", f"sqlite:///{db}",
                         "--port", str(port)], env, port, "/ready")
        try:
            service_runs.append(_wrk(port, seconds, env))
        finally:
            _stop(server)
        print(f"service: {json.dumps(service_runs[-1])}", file=sys.stderr)
        server = _serve([sys.executable, "-m", "uvicorn", "benchmarks.serve:bare_app", "--factory", "--port", str(port),
                         "--log-level", "warning", "--no-access-log", "--no-server-header"], env, port, "/docs")
        try:
            bare_runs.append(_wrk(port, seconds, env))
        finally:
            _stop(server)
        print(f"bare FastAPI: {json.dumps(bare_runs[-1])}", file=sys.stderr)
    worst = min(service_runs, key=lambda r: r["rps"])
    figures = {**worst, "runs": service_runs, "bare_fastapi": bare_runs,
               "rps_vs_bare": round(sum(r["rps"] for r in service_runs) / sum(r["rps"] for r in bare_runs), 3),
               "wrk": f"-t2 -c8 -d{seconds}s, benchmarks/serve_lua/mixed.lua (90% GET k=10, 10% event POSTs)",
               "uvicorn": {"http": "httptools" if importlib.util.find_spec("httptools") else "h11",
                           "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio", "workers": 1},
               "cpus": os.cpu_count(), "load_before": load, "load_after": os.getloadavg()}
    figures["target_met"] = all(r["rps"] >= 1500 and r["p99_ms"] <= 20 and r["errors"] == 0 for r in service_runs)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", choices=["ann", "wrk", "inproc"])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--rounds", type=int, default=1, help="wrk runs of the service and the bare reference, alternating")
    p.add_argument("--work", default=None, help="folder for the trained model and registry (default: a temp folder)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/serve.json"))
    p.add_argument("--raw-baseline", action="store_true", help="also time raw inner-product HNSW on 100k items")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="recstack-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {}
    if args.only in (None, "wrk"):
        record["wrk"] = run_wrk(work, args.seconds, args.rounds)
        print(json.dumps(record["wrk"]))
    if args.only in (None, "inproc"):
        record["inproc"] = run_inproc(work)
        print(json.dumps(record["inproc"]))
    if args.only in (None, "ann"):
        record["ann"] = run_ann(work)
        print(json.dumps(record["ann"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
