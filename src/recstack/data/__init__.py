"""Data: the `Interactions` object, MovieLens and file loaders, synthetic data."""

from recstack.data.interactions import Interactions
from recstack.data.movielens import load_dataset, load_ml100k

__all__ = ["Interactions", "load_dataset", "load_ml100k"]
