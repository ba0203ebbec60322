"""Data: the `Interactions` object, MovieLens and file loaders, synthetic data.

The MovieLens loaders (and pandas, which they need) are imported on first use, so reading a
Parquet file or a saved model does not pay for them.
"""

from typing import Any

from recstack.data.interactions import Interactions

__all__ = ["Interactions", "load_dataset", "load_ml100k"]


def __getattr__(name: str) -> Any:
    if name in ("load_dataset", "load_ml100k"):
        from recstack.data import movielens

        return getattr(movielens, name)
    raise AttributeError(f"module 'recstack.data' has no attribute {name!r}")
