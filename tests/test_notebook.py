"""The level-1 notebook runs end to end and reports a sound test RMSE.

It executes in a kernel started from this very Python (a kernel spec written to a temporary
JUPYTER_PATH), so it sees the installed recstack and nothing else.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "level1_matrix_factorization.ipynb"


def _stream_text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                out.append(o["text"])
    return "".join(out)


@pytest.mark.timeout(600)
def test_level1_notebook_runs(tmp_path, monkeypatch, ml100k):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "recstack-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "recstack (test)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(nb, kernel_name="recstack-test", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails

    text = _stream_text(nb)
    test_rmse = float(re.search(r"^test RMSE: ([0-9.]+)$", text, re.M).group(1))
    protocol_rmse = float(re.search(r"^run_protocol test RMSE: ([0-9.]+)", text, re.M).group(1))
    baseline = float(re.search(r"training mean everywhere would give RMSE ([0-9.]+)", text).group(1))
    assert test_rmse < 0.95, text  # mf with early stopping: ≈ 0.92 on random-80-20 (seed 0)
    assert test_rmse < baseline - 0.15
    assert protocol_rmse == test_rmse  # the notebook's steps and the protocol runner agree exactly
    ran, best = map(int, re.search(r"ran (\d+) epochs; best validation RMSE at epoch (\d+)", text).groups())
    assert 1 < best < ran  # early stopping actually stopped after the best epoch

    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # rating distribution, per user/item, genres, learning curves
    tables = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
              if "text/html" in o.get("data", {})]
    assert len(tables) >= 4  # rated, recommended, new user, similar
    # the movies nearest to Star Wars (the last table) include one of its sequels
    assert "Empire Strikes Back" in tables[-1] or "Return of the Jedi" in tables[-1]
