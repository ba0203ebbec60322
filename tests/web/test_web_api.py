"""The web page over the real service (`recstack web --api URL`) in headless Chromium.

`recstack serve` runs the small `mf` model on loopback (the service tests' `Server`, SQLite store,
a write key); the page is launched against it with that key. On the page: a rating added changes
the list at once, an explanation names a movie from the user's history, an excluded genre leaves
the list, and the A/B tab answers whether or not the service has experiment endpoints. Like the
other browser tests these skip on a developer machine without Chromium and fail in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.test_web_browser import CHROMIUM, TIMEOUT_MS, _free_port, _need, _wait_http, chromium_context

pytestmark = [
    pytest.mark.browser,
    pytest.mark.serve,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
]


@pytest.fixture(scope="module")
def service_page(mf_folder, tmp_path_factory):
    """(page url, service Server, Recommender) — the service on the `mf` model and the page over it."""
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install chromium chromium-driver")
    for module, extra in (("playwright", "dev"), ("gradio", "web"), ("fastapi", "serve"), ("faiss", "serve")):
        try:
            __import__(module)
        except ImportError:
            _need(False, f"{module} is not installed (the [{extra}] extra)")
    from recstack.persist import load_model
    from recstack.recommend import Recommender
    from recstack.web.remote import launch_remote
    from tests.serve.conftest import KEY, Server

    db = f"sqlite:///{tmp_path_factory.mktemp('web-api') / 'events.db'}"
    server = Server(mf_folder, db).start()
    port = _free_port()
    try:
        app = launch_remote(server.url, api_key=KEY, host="127.0.0.1", port=port, user="196",
                            prevent_thread_lock=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            _wait_http(url)
            yield url, server, Recommender(load_model(mf_folder))
        finally:
            app.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, service_page):
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser, service_page):
    url, _, _ = service_page
    pg = browser.new_page()
    pg.goto(url)
    pg.wait_for_selector("#api-go")
    yield pg
    pg.close()


def _col(page, n: int):
    """Locator of column n's cells of the recommendations table (1: title, 3: genres, 5: because)."""
    return page.locator(f'#api-recs [role="gridcell"][data-col="{n}"]')


def _served(server, user: str, k: int) -> list[dict]:
    import httpx

    r = httpx.get(f"{server.url}/users/{user}/recommendations", params={"k": k}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _open_user(page, user: str, k: int) -> None:
    from playwright.sync_api import expect

    page.locator("#api-user textarea, #api-user input").first.fill(user)
    number = page.locator('#api-k input[type="number"]')
    number.fill(str(k))
    number.press("Enter")
    expect(page.locator('#api-k input[type="range"]')).to_have_value(str(k), timeout=TIMEOUT_MS)
    page.click("#api-go")
    expect(page.locator("#api-msg")).to_contain_text(f"Recommendations for user {user}", timeout=TIMEOUT_MS)


def test_rating_changes_the_list_and_explanations_name_the_history(page, service_page):
    from playwright.sync_api import expect

    _, server, rec = service_page
    # the page opens on user 196's list, exactly as the service serves it, each row explained
    expect(page.locator("#api-msg")).to_contain_text("Recommendations for user 196", timeout=TIMEOUT_MS)
    before = _served(server, "196", 10)
    expect(_col(page, 1)).to_have_text([r["title"] for r in before], timeout=TIMEOUT_MS)
    history = {row["label"] for row in rec.rated_by("196", k=1000).rows()}
    because = _col(page, 5).all_inner_texts()
    assert len(because) == 10 and all(because)
    for text in because:
        named = [label for label in history if label in text]
        assert named, f"{text!r} names no movie user 196 rated"
    # rate the top item (the picker opens on it): the list changes at once
    top = before[0]
    expect(page.locator("#api-pick input")).to_have_value(top["label"], timeout=TIMEOUT_MS)
    page.click("#api-add")
    expect(page.locator("#api-msg")).to_contain_text(f"Rated {top['label']} 5", timeout=TIMEOUT_MS)
    after = _served(server, "196", 10)
    assert top["item"] not in [r["item"] for r in after]
    expect(_col(page, 1)).to_have_text([r["title"] for r in after], timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()


def test_an_excluded_genre_leaves_the_list(page, service_page, tmp_path):
    from playwright.sync_api import expect

    _, server, _ = service_page
    _open_user(page, "186", 20)
    assert any("Drama" in text for text in _col(page, 3).all_inner_texts())
    page.locator("#pref-genres").get_by_label("Drama", exact=True).check()
    page.locator('#pref-diversity input[type="number"]').fill("0.5")
    page.locator('#pref-diversity input[type="number"]').press("Enter")
    page.click("#pref-save")
    expect(page.locator("#pref-msg")).to_contain_text("genres hidden: Drama; diversity 0.5", timeout=TIMEOUT_MS)
    served = _served(server, "186", 20)
    assert len(served) == 20 and not any("Drama" in r["genres"] for r in served)
    expect(_col(page, 1)).to_have_text([r["title"] for r in served], timeout=TIMEOUT_MS)
    assert not any("Drama" in text for text in _col(page, 3).all_inner_texts())
    shot = tmp_path / "service-preferences.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # the page reads the stored preferences back when the user is opened again
    page.reload()
    page.wait_for_selector("#api-go")
    _open_user(page, "186", 20)
    expect(page.locator("#pref-msg")).to_contain_text("stored preferences", timeout=TIMEOUT_MS)
    expect(page.locator("#pref-genres").get_by_label("Drama", exact=True)).to_be_checked(timeout=TIMEOUT_MS)


def test_ab_tab_answers_with_or_without_experiments(page, service_page):
    import httpx
    from playwright.sync_api import expect

    _, server, _ = service_page
    page.get_by_role("tab", name="A/B tests").click()
    page.click("#ab-refresh")
    if httpx.get(server.url + "/experiments", timeout=30).status_code == 404:
        expect(page.locator("#ab-msg")).to_contain_text("no A/B experiment endpoints", timeout=TIMEOUT_MS)
    else:
        expect(page.locator("#ab-msg")).to_contain_text("xperiment", timeout=TIMEOUT_MS)
    page.click("#ab-go")
    assert "Traceback" not in page.content()
