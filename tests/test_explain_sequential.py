"""Explanation hints of the sequential models: attention (rollout / last layer) for the
transformers, occlusion for `gru4rec`. Hints are labelled (`exact` False) and still sum to the
score; on a synthetic rule ("a key item A is followed, three items later, by B(A)") the hint puts
most weight on A."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recstack.data.interactions import Interactions  # noqa: E402
from recstack.errors import ConfigError  # noqa: E402
from recstack.models.base import has_ability, make_model  # noqa: E402
from recstack.persist import SavedModel  # noqa: E402
from recstack.recommend import Recommender  # noqa: E402
from recstack.web.app import because_text  # noqa: E402

N_KEYS, N_NOISE = 5, 30  # items 0..4 keys A, 5..9 their targets B(A) = A + 5, 10..39 noise
TINY = {"factors": 16, "max_len": 8, "epochs": 25, "batch_size": 32, "learning_rate": 1e-2,
        "dropout": 0.0, "threads": 1, "early_stopping": False}


def key_data(n_users: int = 400, n_probes: int = 40, seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Each user: a key A, one to three random noise items, B(A) = A + 5. The last `n_probes`
    users stop before B (B(A) is their likeliest next item). Returns the data and each probe's A."""
    rng = np.random.default_rng(seed)
    users, items, times, keys = [], [], [], []
    for u in range(n_users):
        a = int(rng.integers(N_KEYS))
        gap = int(rng.integers(1, 4))  # the history's length says nothing: only A names B
        seq = [a, *(2 * N_KEYS + rng.choice(N_NOISE, gap, replace=False)), a + N_KEYS]
        if u >= n_users - n_probes:
            seq = seq[:-1]
            keys.append(a)
        for step, i in enumerate(seq):
            users.append(u)
            items.append(int(i))
            times.append(1000 * u + 10 * step)
    n_items = 2 * N_KEYS + N_NOISE
    data = Interactions.from_arrays(np.asarray(users), np.asarray(items), np.ones(len(users)), np.asarray(times),
                                    user_ids=np.arange(n_users).astype(str),
                                    item_ids=np.arange(n_items).astype(str), name="keys")
    return data, np.asarray(keys)


@pytest.fixture(scope="module")
def keys():
    return key_data()


@pytest.mark.parametrize("name, extra, method", [
    ("sasrec", {"blocks": 1}, "last"),
    ("tisasrec", {"blocks": 1}, "last"),
    ("bert4rec", {"blocks": 1, "epochs": 40}, "last"),
    ("sasrec", {"blocks": 2, "heads": 2}, "rollout"),
    ("gru4rec", {}, "occlusion"),
])
def test_hint_points_at_the_key_item(keys, name, extra, method):
    """The query's attention goes to A (the last layer's row); rollout keeps half of each layer
    on the residual path, so the query's own item comes first and A leads the items before it;
    occlusion (gru4rec): B is likelier the more items follow A, so dropping the last noise item
    also costs, and A is among the two largest parts."""
    data, key = keys
    m = make_model(name, {**TINY, **extra}).fit(data)
    probes = np.arange(data.n_users - len(key), data.n_users)
    target = key + N_KEYS
    scores = m.score(probes)
    learned = np.mean(np.argmax(scores, axis=1) == target)
    assert learned >= 0.9, f"{name} did not learn the rule: top-1 {learned:.2f}"
    found = 0
    for n, (u, a, b) in enumerate(zip(probes, key, target)):
        e = m.explain(int(u), int(b), method=method)
        assert not e.exact and e.method
        assert sum(p["contribution"] for p in e.parts) == pytest.approx(float(scores[n, b]), abs=1e-5)
        items = [p["key"] for p in e.parts if p["kind"] == "item"]  # largest part first
        if method == "rollout":
            query_item = m.seq_items_[m.seq_indptr_[u + 1] - 1]
            items = [i for i in items if i != query_item]
        found += a in items[:2] if method == "occlusion" else items[0] == a
    assert found / len(key) >= 0.9, f"{name} ({method}): the key item leads in {found}/{len(key)}"


def test_every_sequential_model_explains_with_a_labelled_hint(keys):
    data, _ = keys
    for name in ("sasrec", "tisasrec", "bert4rec", "gru4rec"):
        m = make_model(name, {**TINY, "epochs": 1})
        assert has_ability(m, "explains")
        m.fit(data)
        methods = ["occlusion"] if name == "gru4rec" else ["rollout", "last", "occlusion"]
        for method in methods:
            for u in (0, 17, data.n_users - 1):
                for i in (0, 7, 25):
                    e = m.explain(u, i, method=method)
                    raw = float(m.score([u], [i])[0, 0])
                    assert e.exact is False and e.method
                    assert e.score == pytest.approx(raw, abs=1e-5)
                    assert sum(p["contribution"] for p in e.parts) == pytest.approx(e.score, abs=1e-9)
                    history = set(m.seq_items_[m.seq_indptr_[u]:m.seq_indptr_[u + 1]].tolist())
                    assert {p["key"] for p in e.parts if p["kind"] == "item"} <= history
        if name == "gru4rec":
            with pytest.raises(ConfigError, match="no attention"):
                m.explain(0, 0, method="rollout")
        with pytest.raises(ConfigError, match="method"):
            m.explain(0, 0, method="saliency")


def test_recommender_labels_the_hint(keys):
    data, _ = keys
    m = make_model("sasrec", {**TINY, "blocks": 1, "epochs": 2}).fit(data)
    rec = Recommender(SavedModel(m, data, {}))
    item = rec.for_user("3", k=1).ids[0]
    out = rec.explain("3", item)
    assert out["exact"] is False and out["method"] == "attention (rollout)" and "hint" in out["hint"]
    assert sum(p["contribution"] for p in out["parts"]) == pytest.approx(out["score"], abs=1e-9)
    text = because_text(out)
    assert text.endswith(" (hint)") or text == ""
    assert because_text({"because": ["Alien (1979)"], "exact": True}) == "Alien (1979)"
    assert because_text({"because": ["Alien (1979)"], "exact": False}) == "Alien (1979) (hint)"


def test_sasrec_hint_on_ml100k(ml100k_u1):
    """Real histories, longer than the window: the hint covers only the window's items and still
    sums to the score the ranking used."""
    train, _ = ml100k_u1
    m = make_model("sasrec", {"factors": 16, "max_len": 20, "blocks": 1, "epochs": 1, "threads": 1,
                              "early_stopping": False}).fit(train)
    rec = Recommender(SavedModel(m, train, {}))
    users = rec.train.user_ids[np.argsort(-rec.train.user_activity, kind="stable")[:10]]
    for user in users:
        u = rec.train.user_of(user)
        window = set((m.sequences_[u][m.sequences_[u] > 0] - 1).tolist())
        for item in rec.for_user(user, k=2).ids:
            out = rec.explain(user, item)
            raw = float(m.score([u], [rec.train.item_of(item)])[0, 0])
            assert out["exact"] is False and out["score"] == pytest.approx(raw, abs=1e-5)
            assert sum(p["contribution"] for p in out["parts"]) == pytest.approx(raw, abs=1e-5)
            assert {rec.train.item_of(p["item"]) for p in out["parts"] if "item" in p} <= window


@pytest.mark.slow  # two CLI subprocesses that import torch
def test_cli_says_the_explanation_is_a_hint(keys, tmp_path):
    from recstack.persist import save_model
    from tests.test_cli import one_json, run

    data, _ = keys
    m = make_model("sasrec", {**TINY, "blocks": 1, "epochs": 2}).fit(data)
    save_model(tmp_path / "m", m, data)
    out = one_json(run("recommend", str(tmp_path / "m"), "--user", "3", "-k", "2", "--json", "--explain").stdout)
    for row in out["items"]:
        e = row["explanation"]
        assert e["exact"] is False and e["method"] == "attention (rollout)" and e["hint"].startswith("a hint")
    text = run("recommend", str(tmp_path / "m"), "--user", "3", "-k", "2", "--explain").stdout
    assert text.count("(hint: attention (rollout), not an exact sum)") == 2
