"""A/B experiments: the store (SQLite and a real PostgreSQL) with known outcomes, and the whole flow
over HTTP on the real service (create, start, serve, exposures, click events, report, force, stop)."""

from __future__ import annotations

import pytest

from recstack.ab import experiments as E
from recstack.ab.report import build_report
from recstack.ab.serving import Arm, Experiments, ExposureLog
from recstack.errors import ConfigError, UnknownIdError
from recstack.serve.store import open_store

pytestmark = pytest.mark.serve

T0 = 1_800_000_000.0
HOUR = 3600.0


def _spec(name: str, metric: str = "ctr", planned: int = 2) -> dict:
    return {"name": name, "metric": metric, "planned_users": planned, "window_hours": 24, "salt": "s",
            "variants": [{"name": "A", "share": 0.5},
                         {"name": "B", "share": 0.5, "model_version": 2, "rerank": {"novelty": 0.3}}]}


def test_experiment_store_outcomes_and_report(db_url):
    store = open_store(db_url)
    try:
        exp = E.create(store, _spec("1'; DROP TABLE experiments; --"))
        assert exp.status == "draft" and E.get(store, exp.name).id == exp.id
        assert exp.variants[1].model_version == 2 and exp.variants[1].rerank.novelty == 0.3
        with pytest.raises(ConfigError, match="exists already"):
            E.create(store, _spec(exp.name))
        with pytest.raises(ConfigError, match="registry does not hold"):
            E.start(store, exp.id, available_versions=[1])
        exp = E.start(store, exp.id)
        assert exp.status == "running" and E.running(store).id == exp.id
        other = E.create(store, _spec("second", "conversion:view"))
        with pytest.raises(ConfigError, match="one experiment runs at a time"):
            E.start(store, other.id)
        with pytest.raises(UnknownIdError):
            E.force(store, exp.id, "qa", "C")
        E.force(store, exp.id, "qa", "B")
        live = Experiments(store, ExposureLog(store, background=False))
        assert live.arm("qa") == Arm(E.get(store, exp.id), exp.variants[1], forced=True)
        log = live.exposures
        # u1 (A) clicks a shown item within the window; u2 (A) clicks an item not shown; u3 (B) clicks
        # a shown item after the window; u4 (B) is shown twice and clicks the second list's item
        log.add(exp.id, "A", "u1", ["10", "11"], [1, 2], at=T0)
        log.add(exp.id, "A", "u2", ["10", "11"], [1, 2], at=T0)
        log.add(exp.id, "B", "u3", ["20", "21"], [1, 2], at=T0)
        log.add(exp.id, "B", "u4", ["20"], [1], at=T0)
        log.add(exp.id, "B", "u4", ["22"], [1], at=T0 + 30 * HOUR)
        assert log.flush() == 5 and log.pending() == 0

        def click(user: str, item: str, t: float, kind: str = "click", value: float | None = None) -> None:
            store.add_events(user, [{"event_id": f"{user}-{item}-{t}-{kind}", "item": item, "type": kind,
                                     "value": value, "timestamp": int(t)}])

        click("u1", "11", T0 + 5)
        click("u2", "99", T0 + 5)
        click("u3", "21", T0 + 25 * HOUR)
        click("u4", "22", T0 + 31 * HOUR)
        click("u1", "10", T0 + 60, "rating", 4.0)
        click("u3", "20", T0 + 60, "rating", 2.0)
        click("u4", "20", T0 + 60, "rating", 3.0)
        click("u4", "99", T0 + 60, "view")
        report = build_report(store, exp.id)
        a, b = report["variants"]
        assert (a["users"], a["exposures"], a["successes"], a["mean"]) == (2, 2, 1, 0.5)
        assert (b["users"], b["exposures"], b["successes"], b["mean"]) == (2, 3, 1, 0.5)
        assert a["ci"][0] < 0.5 < a["ci"][1]
        assert report["lift"]["value"] == pytest.approx(0.0) and report["lift"]["test"] == "two-proportion z"
        assert report["decision"] == "not_significant" and not report["srm"]["mismatch"]
        assert len(report["timeline"]) >= 2
        # the same exposures under the other metrics
        for metric, means in (("mean_rating", [4.0, 2.5]), ("conversion:view", [0.0, 0.5])):
            with store._tx() as cur:
                cur.execute(store._sql("UPDATE experiments SET metric = ? WHERE id = ?"), (metric, exp.id))
            r = build_report(store, exp.id)
            assert [v["mean"] for v in r["variants"]] == means, metric
        with store._tx() as cur:
            cur.execute(store._sql("UPDATE experiments SET planned_users = 3 WHERE id = ?"), (exp.id,))
        assert build_report(store, exp.id)["verdict"].startswith("not yet: 2 of planned 3")
        assert [e.name for e in E.list_all(store)] == ["second", exp.name]
        assert E.stop(store, exp.id).status == "stopped" and E.running(store) is None
        with pytest.raises(ConfigError, match="only a running"):
            E.stop(store, exp.id)
    finally:
        store.close()


def test_bad_definitions_name_the_field(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        for bad, word in (({"metric": "conversion:purchase"}, "metric"), ({"planned_users": 0}, "planned_users"),
                          ({"variants": [{"name": "A", "share": 0.6}, {"name": "B", "share": 0.6}]}, "shares"),
                          ({"variants": [{"name": "A", "share": 1}]}, "at least two"),
                          ({"variants": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.5,
                                                                       "rerank": {"diversity": 2}}]}, "diversity"),
                          ({"window_hours": -1}, "window_hours"), ({"colour": "red"}, "colour")):
            with pytest.raises(ConfigError, match=word):
                E.create(store, {**_spec("x"), **bad})
        with pytest.raises(UnknownIdError, match="no experiment"):
            E.get(store, "nothing")
    finally:
        store.close()


def test_background_exposure_log_flushes_by_time_and_at_close(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        exp = E.create(store, _spec("bg"))
        log = ExposureLog(store, max_rows=1000, max_delay=0.05)
        log.add(exp.id, "A", "u1", ["1"], [1])
        import time

        deadline = time.time() + 5
        while log.written < 1 and time.time() < deadline:
            time.sleep(0.02)
        assert log.written == 1  # written by the background thread within max_delay
        for n in range(3):
            log.add(exp.id, "B", f"v{n}", ["2"], [1])
        log.close()
        assert log.written == 4 and build_report(store, exp.id)["exposures"] == 4
    finally:
        store.close()


def test_experiment_flow_over_http(serve, registry, model_dirs):
    registry.add(model_dirs[1])  # version 2, served by variant B
    s = serve(registry.root)
    users = [str(u) for u in range(1, 41)]
    with s.client() as c:
        spec = {**_spec("flow", planned=5), "salt": "flow"}
        assert c.post("/admin/experiments", json=spec).status_code == 401
        r = c.post("/admin/experiments", json=spec, headers=s.headers)
        assert r.status_code == 201, r.text
        exp_id = r.json()["id"]
        assert c.post("/admin/experiments", json={**spec, "name": "bad", "metric": "revenue"},
                      headers=s.headers).status_code in (400, 422)
        # before the start nobody is in the experiment
        assert "variant" not in c.get("/users/1/recommendations").json()
        assert c.post(f"/admin/experiments/{exp_id}/start", headers=s.headers).json()["status"] == "running"
        listed = c.get("/experiments").json()["experiments"]
        assert [(e["id"], e["name"], e["status"]) for e in listed] == [(exp_id, "flow", "running")]
        served = {}
        for u in users:
            body = c.get(f"/users/{u}/recommendations", params={"k": 5}).json()
            assert body["experiment"] == exp_id and body["variant"] in ("A", "B")
            assert body["model_version"] == (2 if body["variant"] == "B" else 1)
            served[u] = body
        batch = c.post("/recommendations", json={"users": users[:2], "k": 5}).json()["results"]
        assert [b["variant"] for b in batch] == [served[u]["variant"] for u in users[:2]]  # sticky
        by_variant = {v: [u for u in users if served[u]["variant"] == v] for v in ("A", "B")}
        assert by_variant["A"] and by_variant["B"]
        clickers = by_variant["A"][:1] + by_variant["B"][:3]
        for u in clickers:
            item = served[u]["items"][0]["item"]
            ev = {"events": [{"event_id": f"c-{u}", "item": item, "type": "click"}]}
            assert c.post(f"/users/{u}/events", json=ev, headers=s.headers).status_code == 201
        # QA: a forced user gets the variant but is not analysed
        r = c.post(f"/admin/experiments/{exp_id}/force", json={"user": "qa-1", "variant": "B"}, headers=s.headers)
        assert r.status_code == 200 and r.json()["forced"] == {"qa-1": "B"}
        assert c.get("/users/qa-1/recommendations").json()["variant"] == "B"
        report = c.get(f"/experiments/{exp_id}/report").json()
        per = {v["name"]: v for v in report["variants"]}
        for v in ("A", "B"):
            n = len(by_variant[v])
            assert per[v]["users"] == n
            assert per[v]["exposures"] == n + sum(u in by_variant[v] for u in users[:2])
            clicked = sum(u in by_variant[v] for u in clickers)
            assert per[v]["mean"] == pytest.approx(clicked / n)
            assert set(per[v]) >= {"name", "users", "exposures", "mean", "ci"}
        assert {"variants", "lift", "verdict", "srm"} <= set(report)
        assert report["lift"]["variant"] == "B" and report["decision"] in ("significant", "not_significant")
        png = c.get(f"/experiments/{exp_id}/lift.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get("/experiments/999/report").status_code == 404
        assert c.get("/experiments/" + "9" * 40).status_code == 404
        assert c.post(f"/admin/experiments/{exp_id}/stop", headers=s.headers).json()["status"] == "stopped"
        assert "variant" not in c.get("/users/1/recommendations").json()
        after = c.get(f"/experiments/{exp_id}/report").json()
        assert after["exposures"] == report["exposures"]
