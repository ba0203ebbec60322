"""CLI of the service: registry add/activate/rollback/list, events export, train on stored events."""

from __future__ import annotations

import json

import pandas as pd

from recstack.cli import main
from recstack.serve.service import EVENTS_FILE, ModelState
from recstack.serve.store import open_store


def test_registry_cli(tmp_path, model_dirs, capsys):
    reg = tmp_path / "reg"
    assert main(["registry", "add", str(reg), str(model_dirs[0])]) == 0
    assert main(["registry", "add", str(reg), str(model_dirs[1])]) == 0
    assert main(["registry", "activate", str(reg), "2", "--force"]) == 0
    assert main(["registry", "rollback", str(reg)]) == 0
    capsys.readouterr()
    assert main(["registry", "list", str(reg)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["active"] == 1 and [v["version"] for v in listed["versions"]] == [1, 2]
    assert main(["registry", "add", str(reg), "/etc"]) == 2  # one-line error, exit 2
    assert "not a saved model folder" in capsys.readouterr().err


def test_train_on_stored_events_and_export(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(db)
    store.add_events("new-user", [{"event_id": f"r{i}", "item": str(i), "type": "rating", "value": 5.0}
                                  for i in (50, 172, 181)])
    store.add_events("new-user", [{"event_id": "c1", "item": "new-item", "type": "click"}])
    store.add_events("196", [{"event_id": "r9", "item": "242", "type": "rating", "value": 1.0}])  # rated 3 in u.data
    store.close()
    out = tmp_path / "model"
    assert main(["train", "biased-mf", "--db", db, "--base", "--param", "epochs=3", "--param", "factors=8",
                 "--out", str(out)]) == 0
    marker = json.loads((out / EVENTS_FILE).read_text())
    assert marker["max_seq"] == 5
    state = ModelState.load(out, None)
    train = state.rec.train
    assert len(train) == 100_003 and "new-user" in train.user_index  # 3 new ratings; 196's rating of 242 replaced
    u, i = train.user_of("196"), train.item_of("242")
    assert train.rating[(train.user == u) & (train.item == i)].tolist() == [1.0]
    store = open_store(db)
    assert state.sync(store) == 0 and state.applied_seq == 5  # nothing newer than the training data
    store.close()
    # a ranking model learns from clicks too, with a weight per event type
    out2 = tmp_path / "model2"
    assert main(["train", "als", "--db", db, "--param", "event_weights=click=0.5", "--param", "epochs=2",
                 "--out", str(out2)]) == 0
    t2 = ModelState.load(out2, None, use_index=False).rec.train
    assert len(t2) == 5 and sorted(t2.rating.tolist()) == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert main(["events", "export", "--db", db, "--out", str(tmp_path / "e.parquet")]) == 0
    frame = pd.read_parquet(tmp_path / "e.parquet")
    assert len(frame) == 5 and set(frame["event_id"]) == {"r50", "r172", "r181", "c1", "r9"}


def test_answers_between_events_do_not_merge_the_update_log(model_dirs):
    """The service learns each event batch through `Recommender.update` and answers from its
    non-merging views: the update log stays pending (no O(log) merge per event), and the answers
    equal those of a model whose log was merged."""
    from recstack.serve.store import Event

    state = ModelState.load(model_dirs[0], None, use_index=False)
    before = state.for_user("196", 10).ids.tolist()
    events = [Event(n + 1, f"e{n}", "196", item, "rating", 1.0, 1_700_000_000 + n)
              for n, item in enumerate(before[:3])]
    events.append(Event(4, "e-new", "someone-new", "50", "rating", 5.0, 1_700_000_100))
    state.apply(events)
    after = state.for_user("196", 10).ids.tolist()
    new_user = state.for_user("someone-new", 10).ids.tolist()
    popular = state.popular(5).ids.tolist()
    assert state.rec._pending  # answered without merging
    assert not set(before[:3]) & set(after) and "50" not in new_user
    _ = state.rec.train  # merge now: the same answers
    state.views.clear()
    assert state.for_user("196", 10).ids.tolist() == after and state.popular(5).ids.tolist() == popular
    assert state.for_user("someone-new", 10).ids.tolist() == new_user
