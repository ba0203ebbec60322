"""Progress bars for the long steps: downloads (with sizes), kNN, EASE, SLIM and NMF fits.

Each bar must reach its total in a few block-sized steps (never one step per row), and say
nothing at all unless progress is switched on (the CLI's --json mode leaves it off)."""

from __future__ import annotations

import pytest

from recstack import progress
from recstack.data.fetch import download
from recstack.data.synthetic import block_data
from recstack.models.base import make_model


@pytest.fixture
def bars(monkeypatch):
    """Switch progress on and record every bar: desc -> [total, sum of updates, update calls]."""
    seen: dict[str, list] = {}
    init, update = progress.Bar.__init__, progress.Bar.update

    def record_init(self, desc, total=None, **kw):
        init(self, desc, total, **kw)
        self._desc = desc
        seen[desc] = [total, 0, 0]

    def record_update(self, n=1, **postfix):
        update(self, n, **postfix)
        seen[self._desc][1] += n
        seen[self._desc][2] += 1

    monkeypatch.setattr(progress.Bar, "__init__", record_init)
    monkeypatch.setattr(progress.Bar, "update", record_update)
    monkeypatch.setattr(progress, "_enabled", True)
    return seen


@pytest.fixture(scope="module")
def data():
    return block_data(n_users=300, n_items=400, n_blocks=3, density=0.1, seed=0)


@pytest.mark.parametrize("model, params, desc, total", [
    ("item-knn", {"k": 20}, "item-knn neighbours", 400),
    ("user-knn", {"k": 20}, "user-knn neighbours", 300),
    ("ease", {}, "ease fit (gram, inverse)", 2),
    ("slim", {"k": 10}, "slim columns", 400),
    ("nmf", {"epochs": 7, "factors": 4}, "nmf epochs", 7),
])
def test_fits_show_a_bar_that_reaches_its_total_in_few_steps(bars, capsys, data, model, params, desc, total):
    make_model(model, params).fit(data)
    assert desc in bars, bars
    got_total, done, calls = bars[desc]
    assert got_total == total and done == total
    assert 2 <= calls <= 60  # per block of rows or per epoch, never per row
    assert desc in capsys.readouterr().err


def test_download_bar_shows_the_size(bars, capsys, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (3 << 20))
    out = download(src.as_uri(), tmp_path / "copy.bin")
    assert out.read_bytes() == src.read_bytes()
    assert bars["download copy.bin"] == [3 << 20, 3 << 20, 3]  # one update per MiB
    assert "3.00M" in capsys.readouterr().err


def test_no_output_when_progress_is_off(capsys, data):
    assert not progress._enabled
    make_model("item-knn", k=5).fit(data)
    make_model("nmf", epochs=2, factors=2).fit(data)
    assert capsys.readouterr().err == ""
