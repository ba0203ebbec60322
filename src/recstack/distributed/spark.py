"""Apache Spark as recstack's distributed engine: MLlib ALS training and batch top-k.

- `spark_session(master)`: local (`local[*]`, `local[2]`) or a cluster (`spark://HOST:7077`);
  local masters bind to loopback, the web UI is off.
- `fit_als_spark(spark, train, config)`: Spark MLlib ALS (Zhou et al. 2008 for explicit ratings;
  Hu, Koren & Volinsky 2008 for implicit feedback, confidence 1 + α·|r|) on a recstack
  `ALSConfig`, returned as an in-process `ALS` with the learned factors, so it saves to the same
  model folder and `recommend`, `web` and the service use it unchanged.
- `spark_top_k(spark, user_factors, item_factors, seen, k)`: top-k for every user with seen
  items excluded, in Spark (item factors broadcast, users scored block-wise in the workers).

λ: MLlib always weights λ by the row's count (λ·n_u for a user, λ·n_i for an item), in implicit
mode too. recstack's `als` does the same with `reg_scaling="count"` (then λ passes through
unchanged); with the default absolute λ (implicit mode), `mllib_reg` maps it to
λ / sqrt(mean n_u · mean n_i), the λ that an average user and an average item both see.

Data reaches Spark through Parquet files of dense indices in a staging folder (a temporary
folder by default; on a cluster pass a path every worker can read, e.g. on HDFS or NFS).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from recstack.data.interactions import Interactions
from recstack.errors import ConfigError, MissingExtraError
from recstack.models.als import ALS, ALSConfig


def _require_pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingExtraError("the Spark engine needs the optional extra [spark]: "
                                "pip install -e '.[spark]' (and Java 17)") from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise MissingExtraError("the Spark engine needs Java 17 (no `java` on PATH and no JAVA_HOME)")


def spark_session(master: str = "local[*]", app: str = "recstack", conf: dict[str, Any] | None = None):
    """A SparkSession on `master` with the UI off; local masters bind to 127.0.0.1 only."""
    _require_pyspark()
    from pyspark.sql import SparkSession

    local = master.startswith("local")
    if local:  # workers run this interpreter (with recstack, numpy, pyarrow importable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.driver.memory", os.environ.get("RECSTACK_SPARK_DRIVER_MEMORY", "4g")))
    if local:
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2))))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextmanager
def staging_folder(path: str | Path | None = None) -> Iterator[Path]:
    """A folder for the Parquet files handed to Spark; a temporary one is removed afterwards."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    tmp = Path(tempfile.mkdtemp(prefix="recstack-spark-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stage(spark, columns: dict[str, np.ndarray], folder: Path, name: str):
    """Write numpy columns as Parquet under `folder/name` and read them back as a DataFrame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for key, value in columns.items():
        if value.ndim == 2:  # one array<float> per row
            arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), value.shape[1]).cast(
                pa.list_(pa.float32()))
        else:
            arrays[key] = pa.array(value)
    pq.write_table(pa.table(arrays), out / "part-0.parquet", row_group_size=1 << 20)
    return spark.read.parquet(str(out))


def mllib_reg(config: ALSConfig, train: Interactions) -> float:
    """MLlib's regParam for a recstack `als` config (see the module docstring)."""
    if config.mode == "explicit" or config.reg_scaling == "count":
        return float(config.reg)
    n = max(len(train), 1)
    users = max(int((train.user_activity > 0).sum()), 1)
    items = max(int((train.item_popularity > 0).sum()), 1)
    return float(config.reg / np.sqrt((n / users) * (n / items)))


def fit_als_spark(spark, train: Interactions, config: ALSConfig | dict[str, Any] | None = None,
                  staging: str | Path | None = None, blocks: int | None = None) -> ALS:
    """Fit MLlib ALS on `train` with a recstack `als` config; returns a fitted in-process `ALS`.

    Factors: (n_users, f) and (n_items, f) float32; users or items without training rows get
    zero vectors (scores 0). Explicit mode trains on r - μ and keeps μ, as the in-process `als`.
    """
    from pyspark.ml.recommendation import ALS as SparkALS

    model = ALS(config)
    c = model.config
    if c.solver == "cg" and c.cg_steps < 1:  # pragma: no cover - checked by the config
        raise ConfigError("cg_steps must be ≥ 1")
    explicit = c.mode == "explicit"
    mu = train.global_mean if explicit else 0.0
    if explicit:
        values = (train.rating - np.float32(mu)).astype(np.float32)
    else:
        values = np.ones(len(train), np.float32) if c.confidence == "binary" else train.rating.astype(np.float32)
    parallelism = spark.sparkContext.defaultParallelism
    blocks = blocks or max(2, min(parallelism, 64))
    with staging_folder(staging) as folder:
        df = _stage(spark, {"user": train.user, "item": train.item, "rating": values}, folder, "ratings")
        # MLlib truncates ALS's lineage every `checkpointInterval` iterations only with a checkpoint
        # folder; without one, 30 iterations overflow the JVM stack
        spark.sparkContext.setCheckpointDir(str(folder / "checkpoints"))
        als = SparkALS(rank=c.factors, maxIter=c.epochs, regParam=mllib_reg(c, train), alpha=c.alpha,
                       implicitPrefs=not explicit, seed=c.seed, userCol="user", itemCol="item",
                       ratingCol="rating", numUserBlocks=blocks, numItemBlocks=blocks, nonnegative=False)
        fitted = als.fit(df)
        X = _factors(fitted.userFactors, train.n_users, c.factors)
        Y = _factors(fitted.itemFactors, train.n_items, c.factors)
    model.n_users_, model.n_items_ = train.n_users, train.n_items
    model.epochs_ = c.epochs
    model.user_factors_, model.item_factors_ = X, Y
    model.global_mean_ = float(mu)
    model.min_rating_ = float(train.rating.min())
    model.max_rating_ = float(train.rating.max())
    return model


def _factors(frame, n: int, f: int) -> np.ndarray:
    """MLlib's (id, features) factor DataFrame as a dense (n, f) float32 array (zeros elsewhere)."""
    table = frame.toArrow() if hasattr(frame, "toArrow") else None
    out = np.zeros((n, f), np.float32)
    if table is not None:
        ids = table["id"].to_numpy()
        feats = table["features"].combine_chunks().flatten().to_numpy().reshape(len(ids), f)
    else:  # pragma: no cover - older pyspark
        pdf = frame.toPandas()
        ids = pdf["id"].to_numpy()
        feats = np.stack(pdf["features"].to_numpy()) if len(pdf) else np.zeros((0, f))
    out[ids] = feats
    return out


def spark_top_k(spark, user_factors: np.ndarray, item_factors: np.ndarray, seen: Interactions | None,
                k: int, users: np.ndarray | None = None, staging: str | Path | None = None,
                candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k item indices by x_u · y_i for `users` (default all) with `seen`'s items excluded.

    Spark scores blocks of users against the broadcast item factors (float32, as the in-process
    scorer) inside the workers. Returns (users (n,), items (n, k) int64, scores (n, k) float32),
    -1 / NaN where a user has fewer than k candidates; users in ascending order.
    """
    from pyspark.sql import functions as F

    n_users = user_factors.shape[0]
    users = np.arange(n_users, dtype=np.int32) if users is None else np.asarray(users, np.int32)
    users = np.sort(users)
    sc = spark.sparkContext
    Y = sc.broadcast(np.ascontiguousarray(item_factors, np.float32))
    allowed = None if candidates is None else sc.broadcast(np.asarray(candidates, bool))
    kk = int(k)

    def score_blocks(batches):
        import pandas as pd

        from recstack.recommend import top_k_from_scores

        items = Y.value
        for pdf in batches:
            if not len(pdf):
                continue
            U = np.stack(pdf["features"].to_numpy()).astype(np.float32)
            scores = U @ items.T
            for row, s in enumerate(pdf["seen"].to_numpy()):
                if s is not None and len(s):
                    scores[row, np.asarray(s, np.int64)] = -np.inf
            if allowed is not None:
                scores[:, ~allowed.value] = -np.inf
            idx, val = top_k_from_scores(scores, kk)
            yield pd.DataFrame({"user": pdf["user"].to_numpy(np.int32),
                                "items": list(idx.astype(np.int32)), "scores": list(val)})

    with staging_folder(staging) as folder:
        uf = _stage(spark, {"user": users, "features": user_factors[users].astype(np.float32)}, folder, "users")
        if seen is not None and len(seen):
            sdf = _stage(spark, {"user": seen.user, "item": seen.item}, folder, "seen")
            sdf = sdf.groupBy("user").agg(F.collect_list("item").alias("seen"))
            uf = uf.join(sdf, on="user", how="left")
        else:
            uf = uf.withColumn("seen", F.lit(None).cast("array<int>"))
        out = uf.mapInPandas(score_blocks, schema="user int, items array<int>, scores array<float>").toArrow()
    Y.unpersist()
    got_users = out["user"].to_numpy()
    order = np.argsort(got_users, kind="stable")
    items = out["items"].combine_chunks().flatten().to_numpy().reshape(len(got_users), kk)[order]
    scores = out["scores"].combine_chunks().flatten().to_numpy().reshape(len(got_users), kk)[order]
    return got_users[order], items.astype(np.int64), scores.astype(np.float32)
