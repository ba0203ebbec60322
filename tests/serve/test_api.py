"""The HTTP API against the real service (uvicorn on loopback, SQLite store): answers, filters,
fallbacks, online updates, auth, limits, CORS, metrics, hot swap."""

from __future__ import annotations

import pytest

from tests.serve.conftest import KEY

pytestmark = pytest.mark.serve


def _items(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["item"] for r in resp.json()["items"]]


def test_recommendations_filters_and_fallback(serve, registry, model_dirs):
    s = serve(registry.root, env={"RECSTACK_EXACT_BELOW": "0"})  # the HNSW index even on 1,682 items
    with s.client() as c:
        body = c.get("/users/196/recommendations", params={"k": 10}).json()
        assert body["user"] == "196" and body["model_version"] == 1 and body["fallback"] is None
        assert len(body["items"]) == 10 and [r["rank"] for r in body["items"]] == list(range(1, 11))
        assert {"item", "label", "title", "year", "genres", "score", "rank"} <= set(body["items"][0])
        # the ANN answer agrees with the exact ranking of the model
        from recstack.persist import load_model
        from recstack.recommend import Recommender

        exact = Recommender(load_model(model_dirs[0])).for_user("196", k=10)
        assert len(set(exact.ids.tolist()) & {r["item"] for r in body["items"]}) >= 9
        seen = set(load_model(model_dirs[0]).train.to_frame().query("user == '196'")["item"])
        assert not seen & {r["item"] for r in body["items"]}
        assert seen & set(_items(c.get("/users/196/recommendations", params={"k": 300, "exclude_seen": "false"})))
        top = body["items"][0]["item"]
        assert top not in _items(c.get("/users/196/recommendations", params={"exclude": f"{top},1"}))
        rows = c.get("/users/196/recommendations",
                     params={"k": 20, "genres": "Comedy,Horror", "year_from": 1990, "year_to": 1995}).json()["items"]
        assert len(rows) == 20
        assert all(1990 <= r["year"] <= 1995 and {"Comedy", "Horror"} & set(r["genres"]) for r in rows)
        unknown = c.get("/users/nobody-here/recommendations", params={"k": 5}).json()
        assert unknown["fallback"] == "popular" and "unknown user" in unknown["fallback_reason"]
        assert len(unknown["items"]) == 5
        batch = c.post("/recommendations", json={"users": ["196", "nobody-here"], "k": 3}).json()
        assert [len(r["items"]) for r in batch["results"]] == [3, 3] and batch["model_version"] == 1
        sim = c.get("/items/50/similar", params={"k": 5}).json()
        assert sim["item"]["item"] == "50" and sim["score_kind"] == "similarity" and len(sim["items"]) == 5
        assert c.get("/items/no-such-item/similar").json()["fallback"] == "popular"


def test_events_update_the_user_at_once(serve, registry):
    s = serve(registry.root)
    with s.client() as c:
        before = c.get("/users/196/recommendations", params={"k": 10, "exclude_seen": "false"}).json()["items"]
        top = before[0]["item"]
        ev = {"events": [{"event_id": "e-1", "item": top, "type": "rating", "value": 1.0, "timestamp": 1700000000}]}
        r = c.post("/users/196/events", json=ev, headers=s.headers)
        assert r.status_code == 201 and r.json()["stored"] == 1
        r = c.post("/users/196/events", json=ev, headers=s.headers)  # a retry: 2xx again, stored once
        assert r.status_code == 201 and r.json() == {**r.json(), "stored": 0, "duplicates": 1}
        assert top not in _items(c.get("/users/196/recommendations"))  # now seen
        more = [{"event_id": f"low-{n}", "item": row["item"], "type": "rating", "value": 1.0}
                for n, row in enumerate(before[1:5])]
        assert c.post("/users/196/events", json={"events": more}, headers=s.headers).json()["stored"] == 4
        after = c.get("/users/196/recommendations", params={"k": 1000, "exclude_seen": "false"}).json()["items"]
        new = {row["item"]: row["score"] for row in after}
        drops = [row["score"] - new[row["item"]] for row in before[:5]]
        assert min(drops) > 0 and sum(drops) / 5 > 0.1, drops  # ratings of 1 moved those estimates down
        # a new user with a few ratings: personalised at once
        r = c.post("/users", json={"user": "fresh", "ratings": [{"item": "50", "value": 5}, {"item": "172", "value": 5},
                                                                  {"item": "181", "value": 5}], "k": 5},
                   headers=s.headers)
        assert r.status_code == 201 and r.json()["recommendations"]["fallback"] is None
        assert not {"50", "172", "181"} & {row["item"] for row in r.json()["recommendations"]["items"]}
        gone = c.delete("/users/fresh", headers=s.headers).json()
        assert gone == {"user": "fresh", "removed_events": 3}
        assert c.get("/users/fresh/recommendations").json()["fallback"] == "popular"
        # items: metadata updates are served; a new item answers with the fallback
        assert c.put("/items/x-new", json={"title": "New", "genres": ["Comedy"], "year": 2024},
                     headers=s.headers).status_code == 201
        assert c.get("/items/x-new").json()["in_model"] is False
        c.put("/items/50", json={"title": "Star Wars IV", "year": 1977, "genres": ["Sci-Fi"]}, headers=s.headers)
        assert c.get("/items/50").json()["title"] == "Star Wars IV"
        m = c.get("/metrics").text
        assert 'recstack_requests_total{method="POST",route="/users/{user}/events",status="201"}' in m
        assert "recstack_model_version 1.0" in m and "recstack_index_items 0.0" in m  # exact below 4,096 items
        assert "recstack_events_stored_total 8.0" in m


def test_restart_applies_stored_events_before_ready(serve, registry, tmp_path):
    db = f"sqlite:///{tmp_path / 'restart.db'}"
    s = serve(registry.root, db)
    with s.client() as c:
        top = _items(c.get("/users/13/recommendations"))[0]
        c.post("/users/13/events", json={"events": [{"event_id": "a", "item": top, "type": "view"}]}, headers=s.headers)
    s.kill()
    s2 = serve(registry.root, db)
    with s2.client() as c:
        assert c.get("/ready").json()["applied_seq"] >= 1
        assert top not in _items(c.get("/users/13/recommendations"))


def test_auth_limits_and_validation(serve, registry, tmp_path):
    s = serve(registry.root)
    ev = {"events": [{"event_id": "e", "item": "50", "type": "click"}]}
    with s.client() as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}):
            assert c.post("/users/1/events", json=ev, headers=headers).status_code == 401
            assert c.get("/admin/models", headers=headers).status_code == 401
            assert c.post("/admin/models", json={"path": "/etc"}, headers=headers).status_code == 401
            assert c.delete("/users/1", headers=headers).status_code == 401
            assert c.put("/items/1", json={"title": "x"}, headers=headers).status_code == 401
        r = c.get("/users/1/recommendations", params={"k": 1001})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]
        r = c.get("/users/1/recommendations", params={"k": "ten"})
        assert r.status_code == 422 and "k" in r.json()["detail"][0]["loc"]
        many = {"events": [{"event_id": str(n), "item": "1", "type": "click"} for n in range(1001)]}
        r = c.post("/users/1/events", json=many, headers=s.headers)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "events"]
        r = c.post("/users/1/events", json={"events": [{"event_id": "r", "item": "1", "type": "rating"}]},
                   headers=s.headers)
        assert r.status_code == 422 and "value" in r.text
        r = c.post("/users/1/events", json={"events": [{"event_id": "r", "item": "1", "type": "like"}]},
                   headers=s.headers)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "type"
        big = b'{"events": [' + b" " * (1 << 20) + b"]}"
        r = c.post("/users/1/events", content=big, headers={**s.headers, "content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/admin/models", json={"path": "/etc"}, headers=s.headers)
        assert 400 <= r.status_code < 500 and "not a saved model" in r.text
        assert c.get("/admin/models", headers=s.headers).json()["active"] == 1
        # CORS is off: no Access-Control-* headers, preflight not honoured
        r = c.get("/users/1/recommendations", headers={"Origin": "http://evil.example"})
        assert not [h for h in r.headers if h.lower().startswith("access-control")]
        r = c.options("/users/1/events", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
        assert r.status_code >= 400 and "access-control-allow-origin" not in r.headers
    assert KEY not in s.log.read_text()
    # --open-writes lifts the key for events only; the key may come from a file
    key_file = tmp_path / "key.txt"
    key_file.write_text("from-a-file\n")
    o = serve(registry.root, f"sqlite:///{tmp_path / 'open.db'}", open_writes=True, key=None, key_file=key_file)
    with o.client() as c:
        assert c.post("/users/1/events", json=ev).status_code == 201
        assert c.delete("/users/1").status_code == 401
        assert c.delete("/users/1", headers={"Authorization": "Bearer from-a-file"}).status_code == 200


def test_fast_path_agrees_with_the_documented_route_and_bad_input_is_no_500(serve, registry):
    s = serve(registry.root)
    with s.client() as c:
        # plain parameters are answered before FastAPI; spelled differently ("True", a repeated
        # key) the same request goes through the documented route: the answers are the same
        for plain, spelled in [("k=7", "k=7&k=7"), ("k=5&exclude_seen=true", "k=5&exclude_seen=True"),
                               ("genres=Comedy&year_from=1990&k=4", "genres=Comedy&year_from=1990&k=4&extra=1"),
                               ("exclude=50,100&exclude_seen=0", "exclude=50,100&exclude_seen=off")]:
            a, b = c.get(f"/users/196/recommendations?{plain}"), c.get(f"/users/196/recommendations?{spelled}")
            assert a.status_code == b.status_code == 200 and a.json() == b.json(), (plain, spelled)
        r = c.get("/users/a%00b/recommendations")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "user"]
        assert c.head("/users/196/recommendations").status_code == 405  # as before: GET only
        # a lone surrogate in a JSON string: 422 naming the fields, not a 500 while echoing it
        r = c.post("/users/1/events", content=b'{"events": [{"event_id": "\\ud800", "item": "5", "type": "click"}]}',
                   headers={**s.headers, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 0, "event_id"]
        # ratings off the model's scale are stored; that user is folded in, nobody else is touched
        other = c.get("/users/13/recommendations").json()
        for n, value in enumerate([1e6, -1e6, 0.0]):
            ev = {"events": [{"event_id": f"far-{n}", "item": "x" * 200, "type": "rating", "value": value},
                             {"event_id": f"near-{n}", "item": "50", "type": "rating", "value": value}]}
            assert c.post("/users/196/events", json=ev, headers=s.headers).status_code == 201
            r = c.get("/users/196/recommendations", params={"k": 1000})
            assert r.status_code == 200 and all(1 <= row["score"] <= 5 for row in r.json()["items"])
        assert c.get("/users/13/recommendations").json() == other
        assert c.get("/items/" + "x" * 200 + "/similar").status_code == 200
    assert "Traceback" not in s.log.read_text()


def test_injection_ids_via_http(serve, registry):
    s = serve(registry.root)
    evil = "1'; DROP TABLE events; --"
    with s.client() as c:
        r = c.post(f"/users/{evil}/events", json={"events": [{"event_id": evil, "item": evil, "type": "click"}]},
                   headers=s.headers)
        assert r.status_code == 201 and r.json()["user"] == evil
        assert c.get(f"/users/{evil}/recommendations").json()["user"] == evil
        assert c.delete(f"/users/{evil}", headers=s.headers).json()["removed_events"] == 1
        assert c.get("/users/196/recommendations").status_code == 200


def test_hot_swap_and_rollback_over_http(serve, registry, model_dirs):
    s = serve(registry.root)
    with s.client() as c:
        h = s.headers
        r = c.post("/admin/models", json={"path": str(model_dirs[1])}, headers=h)
        assert r.status_code == 201 and r.json() == {"version": 2}
        assert c.get("/users/196/recommendations").json()["model_version"] == 1
        r = c.post("/admin/models/2/activate", json={"force": False}, headers=h)
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        assert c.get("/users/196/recommendations").json()["model_version"] == 2
        assert c.post("/admin/rollback", headers=h).json()["version"] == 1
        assert c.get("/users/196/recommendations").json()["model_version"] == 1
        assert c.post("/admin/models/7/activate", headers=h).status_code == 400
