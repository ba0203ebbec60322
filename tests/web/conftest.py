"""A small `mf` model on ML-100K, saved once for the web tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mf_folder(tmp_path_factory, ml100k):
    """Folder of an `mf` model (16 factors, ≤ 15 epochs, early stopping) fitted on all of ML-100K."""
    from recstack.models.base import make_model
    from recstack.persist import save_model

    folder = tmp_path_factory.mktemp("web") / "mf"
    model = make_model("mf", {"factors": 16, "epochs": 15, "seed": 0}).fit(ml100k)
    return save_model(folder, model, ml100k)
