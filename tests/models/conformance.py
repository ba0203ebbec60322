"""The conformance suite every model passes: subclass `ModelConformance` with a tiny config.

    class TestBiasedMF(ModelConformance):
        model_name = "biased-mf"
        params = {"factors": 8, "epochs": 30}

Checks: fit/score shapes and dtype, seen items excluded, unknown user handled, save → load gives
identical scores, same seed → same numbers, refit starts from scratch, config validation, and
a known-answer case on synthetic two-block data (each user's top unseen items come from their
own taste block). Override `known_answer_k` or `test_known_answer` where a model cannot know
the answer (e.g. `popular`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from recstack.data.synthetic import block_data, block_of
from recstack.errors import ConfigError, RecstackError, UnknownIdError
from recstack.models.base import make_model
from recstack.persist import load_model, save_model
from recstack.recommend import Recommender, recommend


class ModelConformance:
    model_name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    known_answer_k: ClassVar[int] = 3
    deterministic: ClassVar[bool] = True
    data_kwargs: ClassVar[dict[str, Any]] = {}

    # ---- fixtures ------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        kw = {"n_users": 60, "n_items": 40, "n_blocks": 2, "density": 0.5, "seed": 0}
        kw.update(cls.data_kwargs)
        return block_data(**kw)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):
        return cls.make().fit(data)

    @classmethod
    def make(cls, **extra: Any):
        return make_model(cls.model_name, {**cls.params, **extra})

    # ---- checks --------------------------------------------------------------------------
    def test_score_shapes(self, fitted, data):
        s = fitted.score(np.arange(5))
        assert s.shape == (5, data.n_items)
        assert s.dtype == np.float32
        assert np.isfinite(s).all()
        sub = fitted.score([0, 3], [1, 2, 7])
        assert sub.shape == (2, 3)
        np.testing.assert_allclose(sub, s[[0, 3]][:, [1, 2, 7]], rtol=1e-5, atol=1e-6)

    def test_seen_items_excluded(self, fitted, data):
        users = np.arange(data.n_users)
        idx, _ = recommend(fitted, users, k=10, exclude=data.csr)
        seen = data.csr
        for u in users:
            got = idx[u][idx[u] >= 0]
            assert not set(got) & set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
            assert len(got) == len(set(got))

    def test_unknown_user(self, fitted, data, tmp_path):
        s = fitted.score([0, data.n_users + 5])
        assert np.isnan(s[1]).all() and np.isfinite(s[0]).all()
        save_model(tmp_path / "m", fitted, data)
        rec = Recommender(load_model(tmp_path / "m"))
        with pytest.raises(UnknownIdError):
            rec.for_user("no-such-user")
        out = rec.for_user("no-such-user", k=5, fallback="popular")
        assert out.fallback == "popular" and len(out) == 5

    def test_save_load_identical(self, fitted, data, tmp_path):
        save_model(tmp_path / "m", fitted, data)
        loaded = load_model(tmp_path / "m")
        np.testing.assert_array_equal(loaded.model.score(np.arange(data.n_users)),
                                      fitted.score(np.arange(data.n_users)))
        assert loaded.model.config == fitted.config
        assert loaded.train.fingerprint() == data.fingerprint()

    def test_same_seed_same_numbers(self, fitted, data):
        if not self.deterministic:
            pytest.skip("model is not bit-for-bit deterministic")
        again = self.make().fit(data)
        np.testing.assert_array_equal(again.score(np.arange(10)), fitted.score(np.arange(10)))

    def test_refit_starts_from_scratch(self, data):
        m = self.make()
        m.fit(data)
        first = m.score(np.arange(5))
        m.fit(data)
        if self.deterministic:
            np.testing.assert_array_equal(m.score(np.arange(5)), first)

    def test_unknown_parameter_refused(self):
        with pytest.raises(ConfigError, match="no_such_param"):
            self.make(no_such_param=1)

    def test_config_roundtrip(self, fitted):
        cfg = fitted.config.to_dict()
        assert type(fitted)(cfg).config == fitted.config

    def test_not_fitted(self):
        with pytest.raises(RecstackError):
            self.make().score([0])

    def test_predict_matches_explicit(self, fitted, data):
        if not fitted.explicit:
            with pytest.raises(RecstackError):
                fitted.predict(data.user[:3], data.item[:3])
            return
        p = fitted.predict(data.user[:50], data.item[:50])
        assert p.shape == (50,) and np.isfinite(p).all()
        assert p.min() >= data.rating.min() - 1e-6 and p.max() <= data.rating.max() + 1e-6

    def test_known_answer(self, fitted, data):
        """Each user's top unseen items come from their own taste block."""
        n_blocks = self.data_kwargs.get("n_blocks", 2)
        users = np.arange(data.n_users)
        idx, _ = recommend(fitted, users, k=self.known_answer_k, exclude=data.csr)
        right = block_of(idx, n_blocks) == block_of(users, n_blocks)[:, None]
        assert right[idx >= 0].mean() >= 0.95, f"in-block share {right[idx >= 0].mean():.3f}"
