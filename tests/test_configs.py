"""Every file in configs/ says how it was chosen (`chosen`), its hyperparameters build the model,
and no config's tuning carve holds a row of its protocol's test part — checked by rebuilding the
carve from the `chosen` record and comparing row sets fold by fold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recstack.evaluate import Fold, get_protocol
from recstack.models.base import get_model_class
from recstack.models.config import ConfigFile, load_config_file
from recstack.tune import carve_parts, carve_source

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.json"))
CHOSEN_KEYS = {"protocol", "carve", "trials", "seed", "metric", "value", "commit"}


def _keys(data) -> set[tuple[int, int]]:
    return set(zip(data.user.tolist(), data.item.tolist()))


def seen_test_rows(cf: ConfigFile, folds: list[Fold]) -> dict[str, int]:
    """Fold name → how many of that fold's test rows the tuning carve behind its choice holds."""
    by_name = {f.name: f for f in folds}
    carve = cf.chosen["carve"].replace("seed unknown", "seed 0")  # any seed cuts from the same part
    source = carve_source(carve)
    out = {}
    for fold in folds:
        if cf.folds and fold.name not in cf.folds:
            continue
        cut_from = by_name[source] if source else fold
        train, valid = carve_parts(carve, cut_from.train, cut_from.valid)
        out[fold.name] = len((_keys(train) | _keys(valid)) & _keys(fold.test))
    return out


def test_there_are_configs():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_records_how_it_was_chosen(path):
    model, protocol = path.name.removesuffix(".json").split(".", 1)
    cf = load_config_file(path)
    assert cf.chosen is not None, f"{path.name} has no 'chosen' record"
    assert CHOSEN_KEYS <= set(cf.chosen), f"{path.name}: missing {CHOSEN_KEYS - set(cf.chosen)}"
    assert cf.chosen["protocol"] == protocol and cf.chosen["commit"]
    cls = get_model_class(model)
    for params in (cf.folds.values() if cf.folds else [cf.params]):
        assert "chosen" not in params
        cls(params)  # the hyperparameters build the model; provenance is kept aside
    raw = json.loads(path.read_text())
    if protocol == "ml100k-folds":  # nested: one choice per fold, each tuned on that fold's train
        assert set(raw) == {"folds", "chosen"} and list(raw["folds"]) == ["u1", "u2", "u3", "u4", "u5"]
        assert carve_source(cf.chosen["carve"]) is None
        assert set(cf.chosen["value"]) == set(raw["folds"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_tuning_carve_overlaps_the_protocol_test_rows(ml100k, path):
    cf = load_config_file(path)
    folds = get_protocol(cf.chosen["protocol"]).make_folds(ml100k, 0)
    seen = seen_test_rows(cf, folds)
    assert seen and not any(seen.values()), f"{path.name}: tuning carve holds test rows {seen}"


def test_the_check_catches_a_choice_tuned_on_u1_and_applied_to_every_fold(ml100k):
    """The old way — one choice tuned on a carve of u1's training part, used on u1..u5 — is caught:
    u1's training part is u2..u5's test rows."""
    cf = ConfigFile({"factors": 10}, {}, {"protocol": "ml100k-folds",
                                          "carve": "validation_split(u1 train, 0.1, seed 0)"})
    seen = seen_test_rows(cf, get_protocol("ml100k-folds").make_folds(ml100k, 0))
    assert seen["u1"] == 0 and all(seen[f] > 15_000 for f in ("u2", "u3", "u4", "u5"))


def test_stream_fold_and_its_tuning_carve_follow_time(ml100k):
    """The stream protocol's fold is its fitted half (before the time cut) and the replayed rest;
    its tuning carve splits the fitted half again by time, so it never reaches a replayed day."""
    from recstack.split import stream_split

    fold = get_protocol("stream").make_folds(ml100k, 0)[0]
    initial, days = stream_split(ml100k, 0.5)
    assert len(fold.train) == len(initial) and len(fold.test) == sum(len(b) for _, b in days)
    assert fold.train.timestamp.max() < fold.test.timestamp.min()
    train, valid = carve_parts("stream_split(fold train, 0.5)", fold.train)
    assert len(train) + len(valid) == len(fold.train) and train.timestamp.max() < valid.timestamp.min()
    assert not (_keys(train) | _keys(valid)) & _keys(fold.test)
