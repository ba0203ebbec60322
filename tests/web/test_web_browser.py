"""The web page in a real browser: headless Debian Chromium driven by Playwright.

A small `mf` model is trained on ML-100K and saved; `recstack.web.app.launch` serves it on a free
loopback port; each test loads the page, clicks through one feature and checks that the rendered
table shows exactly what `Recommender` answers, in order. Without Chromium the tests skip on a
developer machine and fail in CI (env CI set), where .ci/run installs it.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.browser,
    # Gradio's own queue code trips pandas 3 deprecation warnings; not ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def _need(ok: bool, why: str) -> None:
    """Skip on a developer machine, fail in CI: the browser test must never vanish silently there."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set, so this is an error: .ci/run installs chromium and the dev extra)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(mf_folder):
    """(url, Recommender) of a small `mf` model served by the web page in a background thread."""
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install chromium chromium-driver")
    for module, extra in (("playwright", "dev"), ("gradio", "web")):
        try:
            __import__(module)
        except ImportError:
            _need(False, f"{module} is not installed (the [{extra}] extra)")
    from recstack.persist import load_model
    from recstack.recommend import Recommender
    from recstack.web.app import launch

    port = _free_port()
    app = launch(mf_folder, host="127.0.0.1", port=port, prevent_thread_lock=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url)
        yield url, Recommender(load_model(mf_folder))
    finally:
        app.close()


@contextmanager
def chromium_context(profile: Path):
    """A headless Chromium context (Debian's binary, a throw-away profile) with our timeouts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, served):
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser, served):
    url, _ = served
    pg = browser.new_page()
    pg.goto(url)
    pg.wait_for_selector("#user-go")
    yield pg
    pg.close()


def _titles(page, elem_id: str):
    """Locator of the title cells (2nd column) of a rendered result table (Gradio 6 grid)."""
    return page.locator(f'#{elem_id} [role="gridcell"][data-col="1"]')


def _scores(page, elem_id: str):
    """Locator of the score cells (5th column) of a rendered result table."""
    return page.locator(f'#{elem_id} [role="gridcell"][data-col="4"]')


def _shown(items) -> list[str]:
    """The numbers an `ItemList` should show on the page: display scores, two decimals."""
    return [f"{v:.2f}" for v in items.display_scores()]


def _choose_user(page, user_id: str) -> None:
    page.locator("#user-id textarea, #user-id input").first.fill(user_id)


def _rate(page, query: str, stars: int) -> str:
    """Search, keep the first hit, set the slider to `stars`, add; returns the hit's label."""
    from playwright.sync_api import expect

    page.locator("#new-search textarea, #new-search input").first.fill(query)
    page.click("#new-search-go")
    expect(page.locator("#new-msg")).to_contain_text(f"match {query}")
    pick = page.locator("#new-pick input")
    expect(pick).not_to_have_value("")
    label = pick.input_value()
    number = page.locator('#new-rating input[type="number"]')
    number.fill(str(stars))
    number.press("Enter")
    expect(page.locator('#new-rating input[type="range"]')).to_have_value(str(stars))
    page.click("#new-add")
    expect(page.locator("#new-msg")).to_contain_text(f"Rated {label} {stars}")
    return label


def test_existing_user_top_n(page, served, tmp_path):
    from playwright.sync_api import expect

    _, rec = served
    # a first visit is never an empty page: the most active user's list is shown at once
    from recstack.web.app import sample_user

    first = sample_user(rec)
    opening = rec.for_user(first, k=10)
    expect(page.locator("#user-msg")).to_contain_text(f"User {first}")
    expect(_titles(page, "user-recs")).to_have_text([row["title"] for row in opening.rows()])
    recs = rec.for_user("196", k=10)
    expected = [row["title"] for row in recs.rows()]
    rated = rec.rated_by("196", k=10)
    assert len(expected) == 10
    _choose_user(page, "196")
    page.click("#user-go")
    expect(page.locator("#user-msg")).to_contain_text("User 196")
    expect(_titles(page, "user-recs")).to_have_text(expected)
    expect(_scores(page, "user-recs")).to_have_text(_shown(recs))  # the numbers, not only titles
    because = page.locator('#user-recs [role="gridcell"][data-col="5"]')
    expect(because).to_have_text([" and ".join(rec.because("196", i)) for i in recs.ids])
    history = {row["label"] for row in rec.rated_by("196", k=1000).rows()}
    assert any(label in history for label in rec.because("196", recs.ids[0]))  # names a rated movie
    expect(_titles(page, "user-rated")).to_have_text([row["title"] for row in rated.rows()])
    expect(_scores(page, "user-rated")).to_have_text([f"{v:g}" for v in rated.scores])
    shot = tmp_path / "existing-user.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_new_user_fold_in(page, served, tmp_path):
    from playwright.sync_api import expect

    _, rec = served
    star_wars = rec.search("Star Wars")[0]
    toy_story = rec.search("Toy Story")[0]
    folded = rec.for_new_user({star_wars["item"]: 5, toy_story["item"]: 3})
    expected = [row["title"] for row in folded.rows()]
    page.get_by_role("tab", name="New user").click()
    assert _rate(page, "Star Wars", 5) == star_wars["label"]
    assert _rate(page, "toy story", 3) == toy_story["label"]
    expect(_titles(page, "new-rated")).to_have_text([star_wars["title"], toy_story["title"]])
    page.click("#new-go")
    expect(page.locator("#new-msg")).to_contain_text("from your 2 ratings")
    expect(_titles(page, "new-recs")).to_have_text(expected)
    expect(_scores(page, "new-recs")).to_have_text(_shown(folded))
    page.screenshot(path=str(tmp_path / "new-user.png"), full_page=True)
    page.click("#new-clear")
    expect(page.locator("#new-msg")).to_contain_text("Ratings cleared")
    page.click("#new-go")
    expect(page.locator("#new-msg")).to_contain_text("Rate at least one movie first")


def test_similar_movies(page, served, tmp_path):
    from playwright.sync_api import expect

    _, rec = served
    star_wars = rec.search("Star Wars")[0]
    similar = rec.similar(star_wars["item"], k=10)
    expected = [row["title"] for row in similar.rows()]
    page.get_by_role("tab", name="Similar movies").click()
    page.click("#sim-go")
    expect(page.locator("#sim-msg")).to_contain_text("Choose a movie first")
    page.locator("#sim-search textarea, #sim-search input").first.fill("star wars")
    page.click("#sim-search-go")
    expect(page.locator("#sim-pick input")).to_have_value(star_wars["label"])
    page.click("#sim-go")
    expect(page.locator("#sim-msg")).to_contain_text(star_wars["label"])
    expect(_titles(page, "sim-recs")).to_have_text(expected)
    shown = _shown(similar)
    assert len(set(shown)) > 1 and shown[-1] != "1.00"  # cosines, not ratings clipped to 1.00
    expect(_scores(page, "sim-recs")).to_have_text(shown)
    page.screenshot(path=str(tmp_path / "similar.png"), full_page=True)


def test_messages_for_bad_input(page, served):
    from playwright.sync_api import expect

    _, rec = served
    _choose_user(page, "")
    page.click("#user-go")
    expect(page.locator("#user-msg")).to_contain_text("Type a user id first")
    _choose_user(page, "99999")
    page.click("#user-go")
    expect(page.locator("#user-msg")).to_contain_text("Unknown user id 99999")
    popular = [row["title"] for row in rec.for_user("99999", k=10, fallback="popular").rows()]
    expect(_titles(page, "user-recs")).to_have_text(popular)
    page.get_by_role("tab", name="New user").click()
    page.click("#new-search-go")
    expect(page.locator("#new-msg")).to_contain_text("Type part of a movie title")
    page.locator("#new-search textarea, #new-search input").first.fill("no such film xyzzy")
    page.click("#new-search-go")
    expect(page.locator("#new-msg")).to_contain_text("No movie title contains no such film xyzzy")
    page.click("#new-add")
    expect(page.locator("#new-msg")).to_contain_text("pick it before adding a rating")
    assert "Traceback" not in page.content()
