"""Per-user preferences in the real service: PUT/GET, validation, excluded genres in every list,
diversity and novelty re-ranking, explanations, and two workers seeing a change at once."""

from __future__ import annotations

import itertools
import math

import httpx
import pytest

pytestmark = pytest.mark.serve

USERS = ["196", "186", "22", "244", "166", "298"]


def _rows(resp) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def _ild(rows: list[dict]) -> float:
    """Intra-list diversity: the mean of 1 − cosine over pairs of the rows' genre vectors."""
    sims = []
    for a, b in itertools.combinations(rows, 2):
        ga, gb = set(a["genres"]), set(b["genres"])
        sims.append(len(ga & gb) / math.sqrt(len(ga) * len(gb)) if ga and gb else 0.0)
    return 1.0 - sum(sims) / len(sims)


def _put(c, s, user: str, **prefs):
    return c.put(f"/users/{user}/preferences", json=prefs, headers=s.headers)


def test_preferences_put_get_validate_and_exclude(serve, registry):
    s = serve(registry.root)
    with s.client() as c:
        got = c.get("/users/196/preferences").json()
        assert got["stored"] is False and got["diversity"] == 0 and got["exclude_genres"] == []
        assert {"Drama", "Comedy", "Horror"} <= set(got["known_genres"])
        # writes need the key; bad values are 422 naming the field
        assert c.put("/users/196/preferences", json={"diversity": 0.5}).status_code == 401
        for body, loc in [({"diversity": 1.5}, ["body", "diversity"]), ({"novelty": -0.1}, ["body", "novelty"]),
                          ({"exclude_genres": ["Drama", "Space Opera"]}, ["body", "exclude_genres", 1]),
                          ({"similarity": "colour"}, ["body", "similarity"]), ({"lambda": 0.5}, ["body", "lambda"])]:
            r = _put(c, s, "196", **body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"][0]["loc"] == loc, r.json()
        assert "Space Opera" in _put(c, s, "196", exclude_genres=["Space Opera"]).json()["detail"][0]["msg"]
        assert c.get("/users/196/preferences").json()["stored"] is False  # nothing invalid was stored
        before = _rows(c.get("/users/196/recommendations", params={"k": 50}))
        assert any("Drama" in r["genres"] for r in before)
        r = _put(c, s, "196", exclude_genres=["drama", "Horror", "Drama"], novelty=0.25)
        assert r.status_code == 200, r.text
        want = {"exclude_genres": ["Drama", "Horror"], "diversity": 0.0, "novelty": 0.25, "similarity": "genre",
                "stored": True}
        assert {k: r.json()[k] for k in want} == want
        got = c.get("/users/196/preferences").json()
        assert {k: got[k] for k in want} == want
        # every list served to the user: single (with explanations), batch, a large k
        for params in ({"k": 10}, {"k": 200}, {"k": 20, "explain": "true"}, {"k": 20, "exclude_seen": "false"}):
            rows = _rows(c.get("/users/196/recommendations", params=params))
            assert rows and not any({"Drama", "Horror"} & set(r["genres"]) for r in rows), params
        batch = c.post("/recommendations", json={"users": ["196", "186"], "k": 50}).json()["results"]
        assert not any({"Drama", "Horror"} & set(r["genres"]) for r in batch[0]["items"])
        assert any("Drama" in r["genres"] for r in batch[1]["items"])  # only this user's lists change
        # a user the model does not know gets the popular fallback, filtered as well
        assert _put(c, s, "newcomer", exclude_genres=["Drama"]).status_code == 200
        rows = _rows(c.get("/users/newcomer/recommendations", params={"k": 30}))
        assert not any("Drama" in r["genres"] for r in rows)
        assert any("Drama" in r["genres"] for r in _rows(c.get("/users/other/recommendations", params={"k": 30})))
        # PUT replaces; deleting the user removes the preferences
        assert _put(c, s, "196").json()["exclude_genres"] == []
        assert any("Drama" in r["genres"] for r in _rows(c.get("/users/196/recommendations", params={"k": 50})))
        assert c.delete("/users/newcomer", headers=s.headers).status_code == 200
        assert c.get("/users/newcomer/preferences").json()["stored"] is False


def test_diversity_raises_intra_list_diversity_and_novelty_lowers_popularity(serve, registry, model_dirs):
    s = serve(registry.root)
    with s.client() as c:
        ild: dict[float, float] = {}
        for lam in (0.0, 0.5, 1.0):
            values = []
            for u in USERS:
                assert _put(c, s, u, diversity=lam).status_code == 200
                rows = _rows(c.get(f"/users/{u}/recommendations", params={"k": 10}))
                assert len(rows) == 10
                values.append(_ild(rows))
            ild[lam] = sum(values) / len(values)
        assert ild[0.0] < ild[0.5] < ild[1.0], ild
        from recstack.persist import load_model

        train = load_model(model_dirs[0]).train

        def mean_popularity(novelty: float) -> float:
            shown = []
            for u in USERS:
                assert _put(c, s, u, novelty=novelty).status_code == 200
                shown += [r["item"] for r in _rows(c.get(f"/users/{u}/recommendations", params={"k": 10}))]
            return sum(float(train.item_popularity[train.item_index[i]]) for i in shown) / len(shown)

        assert mean_popularity(1.0) < 0.7 * mean_popularity(0.0)


def test_explanations_name_the_users_history(serve, registry, model_dirs):
    s = serve(registry.root)
    with s.client() as c:
        rows = _rows(c.get("/users/196/recommendations", params={"k": 5, "explain": "true"}))
        from recstack.persist import load_model

        train = load_model(model_dirs[0]).train
        history = set(train.to_frame().query("user == '196'")["item"])
        for row in rows:
            e = row["explanation"]
            assert e["because"] and len(e["parts"]) <= 5
        one = c.get(f"/users/196/recommendations/{rows[0]['item']}/explanation", params={"top": 1000}).json()
        assert abs(sum(p["contribution"] for p in one["parts"]) - one["score"]) < 1e-4
        assert {p["item"] for p in one["parts"] if "item" in p} <= history
        assert one["because"] == rows[0]["explanation"]["because"]
        assert c.get("/users/nobody/recommendations/50/explanation").status_code == 404
        assert c.get("/users/196/recommendations/no-such-item/explanation").status_code == 404
        fallback = c.get("/users/nobody/recommendations", params={"explain": "true"}).json()
        assert fallback["fallback"] == "popular" and "explanation" not in fallback["items"][0]


@pytest.mark.slow
def test_two_workers_on_postgresql_follow_a_change_at_once(serve, registry, pg_server):
    s = serve(registry.root, pg_server(), workers=2)
    pids = set()
    for genre in ("Drama", "Comedy", "Action"):
        with httpx.Client(base_url=s.url, timeout=30) as writer:
            assert _put(writer, s, "42", exclude_genres=[genre]).status_code == 200
        for _ in range(4):
            with httpx.Client(base_url=s.url, timeout=30) as reader:  # a new connection: any worker
                r = reader.get("/users/42/recommendations", params={"k": 50})
                pids.add(r.headers.get("x-worker"))
                genres = [set(row["genres"]) for row in _rows(r)]
                assert not any(genre in g for g in genres), (genre, r.headers.get("x-worker"))
                if genre != "Drama":  # the earlier exclusion is lifted everywhere
                    assert any("Drama" in g for g in genres)
    assert len(pids - {None}) == 2, f"both workers should have answered: {pids}"


def test_open_writes_lets_anyone_set_preferences(serve, registry):
    s = serve(registry.root, open_writes=True, key=None)
    with s.client() as c:
        r = c.put("/users/7/preferences", json={"exclude_genres": ["Comedy"], "novelty": 0.5})
        assert r.status_code == 200, r.text
        rows = _rows(c.get("/users/7/recommendations", params={"k": 30}))
        assert not any("Comedy" in row["genres"] for row in rows)
        assert c.put("/items/x", json={"title": "X"}).status_code == 401  # other writes still need the key
