"""Shared fixtures: ML-100K (fetched and verified once per session), synthetic data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def ml100k():
    from recstack.data import load_ml100k

    return load_ml100k()


@pytest.fixture(scope="session")
def ml100k_u1(ml100k):
    from recstack.split import ml100k_folds

    _, train, test = ml100k_folds(ml100k)[0]
    return train, test


@pytest.fixture(scope="session")
def ml100k_msr(ml100k):
    from recstack.split import stratified_split

    return stratified_split(ml100k, 0.75, "item", 42)


@pytest.fixture(scope="session")
def blocks():
    from recstack.data.synthetic import block_data

    return block_data(n_users=60, n_items=40, n_blocks=2, density=0.5, seed=0)
