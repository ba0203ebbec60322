"""recstack: a recommender-system toolkit, from matrix factorization to a production service."""

__version__ = "0.1.0"
