"""Model folders: writing never deletes what recstack did not write; loading checks the format
version, array shapes and vocabulary sizes, and maps a CUDA-trained torch model to the CPU."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from recstack.data.synthetic import block_data
from recstack.errors import DataError, OutputError, RecstackError
from recstack.models.base import make_model
from recstack.persist import FORMAT, export_seed_layout, is_model_folder, load_model, save_model, write_json_file


@pytest.fixture(scope="module")
def data():
    return block_data(n_users=30, n_items=20, n_blocks=2, density=0.5, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    return make_model("biased-mf", factors=4, epochs=3, early_stopping=False).fit(data)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ---- writing ----------------------------------------------------------------------------------
def test_refuses_a_folder_holding_other_files(tmp_path, fitted, data):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    (folder / "figures").mkdir()
    with pytest.raises(OutputError, match="thesis.*not a recstack model folder"):
        save_model(folder, fitted, data)
    assert _files(folder) == ["chapter1.tex", "figures"]
    assert (folder / "chapter1.tex").read_text() == "years of work"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_refuses_a_model_folder_with_a_stranger_inside_and_a_file(tmp_path, fitted, data):
    out = save_model(tmp_path / "m", fitted, data)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a recstack model folder"):
        save_model(out, fitted, data)
    assert (out / "notes.txt").read_text() == "mine" and is_model_folder(out) is False
    plain = tmp_path / "a-file"
    plain.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        save_model(plain, fitted, data)
    assert plain.read_text() == "x"


def test_writes_into_new_and_empty_folders_and_replaces_a_model_folder(tmp_path, fitted, data):
    new = save_model(tmp_path / "deep" / "new", fitted, data)
    assert is_model_folder(new) and json.loads((new / "model.json").read_text())["format"] == FORMAT
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_model_folder(save_model(empty, fitted, data))
    other = make_model("popular").fit(data)
    save_model(new, other, data)  # replacing a model folder is allowed, as a whole
    assert load_model(new).model.name == "popular"
    assert "arrays.npz" in _files(new) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_seed_export_never_deletes_other_files(tmp_path, fitted, data):
    saved = load_model(save_model(tmp_path / "m", fitted, data))
    seed = export_seed_layout(tmp_path / "seed", saved)
    export_seed_layout(seed, saved)  # an earlier export is replaced
    assert _files(seed) == ["item_embeddings.npy", "item_id_map.json", "user_embeddings.npy",
                            "user_id_map.json"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.csv").write_text("1,2")
    with pytest.raises(OutputError, match="busy"):
        export_seed_layout(busy, saved)
    assert _files(busy) == ["keep.csv"]


def test_json_outputs_replace_only_their_own_kind(tmp_path):
    record = {"protocol": "p", "metrics": {"rmse": np.float32(0.5)}}
    out = write_json_file(tmp_path / "new" / "r.json", record, "result record")  # parent created
    assert json.loads(out.read_text())["metrics"]["rmse"] == 0.5
    write_json_file(out, {**record, "seed": 1}, "result record")
    assert json.loads(out.read_text())["seed"] == 1
    mine = tmp_path / "mine.json"
    mine.write_text('{"something": "else"}')
    with pytest.raises(OutputError, match="not a result record"):
        write_json_file(mine, record, "result record")
    with pytest.raises(OutputError, match="is a folder"):
        write_json_file(tmp_path / "new", record, "result record")
    assert mine.read_text() == '{"something": "else"}'


# ---- loading ----------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path, fitted, data):
    return save_model(tmp_path / "m", fitted, data)


def _edit_json(path, change):
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


def test_newer_or_unknown_format_is_refused(folder):
    _edit_json(folder / "model.json", lambda i: i.update(format=FORMAT + 1))
    with pytest.raises(DataError, match=f"model.json: model format {FORMAT + 1} .*newer recstack"):
        load_model(folder)
    _edit_json(folder / "model.json", lambda i: i.update(format="two"))
    with pytest.raises(DataError, match="unknown model format"):
        load_model(folder)


def test_format_1_folders_still_load(folder, fitted):
    _edit_json(folder / "model.json", lambda i: (i.update(format=1), i.pop("arrays")))
    np.testing.assert_array_equal(load_model(folder).model.score([0, 1]), fitted.score([0, 1]))


def test_damaged_arrays_name_the_file_and_array(folder, fitted):
    arrays, _ = fitted.get_state()
    np.savez(folder / "arrays.npz", **{**arrays, "item_factors_": arrays["item_factors_"][:-1]})
    with pytest.raises(DataError, match=r"arrays.npz: array 'item_factors_' has shape \(19, 4\)"):
        load_model(folder)
    np.savez(folder / "arrays.npz", **{k: v for k, v in arrays.items() if k != "user_bias_"})
    with pytest.raises(DataError, match="arrays.npz: array 'user_bias_' is missing"):
        load_model(folder)
    (folder / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="arrays.npz"):
        load_model(folder)


def test_corrupt_member_is_named(folder):
    raw = bytearray((folder / "arrays.npz").read_bytes())
    with zipfile.ZipFile(folder / "arrays.npz") as z:
        info = z.getinfo("item_factors_.npy")
    at = info.header_offset + 30 + len(info.filename) + 200  # inside the stored data
    raw[at] ^= 0xFF
    (folder / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="arrays.npz: array 'item_factors_' is unreadable"):
        load_model(folder)


def test_factor_rows_checked_against_the_vocabulary_in_every_format(folder, fitted):
    """A format-1 folder has no recorded shapes: factor rows must still match vocab.json."""
    _edit_json(folder / "model.json", lambda i: (i.update(format=1), i.pop("arrays")))
    _edit_json(folder / "vocab.json", lambda v: v["users"].append("stranger"))
    with pytest.raises(DataError, match="model.json: data.n_users = 30 but vocab.json holds 31"):
        load_model(folder)
    _edit_json(folder / "model.json", lambda i: (i["data"].update(n_users=31), i["state"].update(n_users_=31)))
    with pytest.raises(DataError, match=r"arrays.npz: array 'user_factors_' has shape \(30, 4\)"):
        load_model(folder)


def test_train_indices_out_of_range(folder):
    with np.load(folder / "train.npz") as z:
        t = {k: z[k] for k in z.files}
    t["item"][0] = 99
    np.savez(folder / "train.npz", **t)
    with pytest.raises(DataError, match="train.npz: array 'item' holds indices outside 0..19"):
        load_model(folder)


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(RecstackError, match="no such model folder"):
        load_model(tmp_path / "nowhere")


def test_cuda_trained_model_loads_on_a_cpu_only_machine(tmp_path, data):
    torch = pytest.importorskip("torch")
    m = make_model("multdae", hidden=0, factors=4, epochs=2, early_stopping=False, threads=1).fit(data)
    out = save_model(tmp_path / "gpu", m, data)
    _edit_json(out / "model.json", lambda i: i["config"].update(device="cuda"))  # as if trained on a GPU
    loaded = load_model(out).model
    assert loaded.config.device == "cuda"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(loaded.network_.parameters()).device.type == expected
    np.testing.assert_allclose(loaded.score([0, 1, 2]), m.score([0, 1, 2]), rtol=1e-5, atol=1e-6)
