"""The level-1 web page: movie recommendations from a saved model, served by Gradio.

Three tabs — a known user's top-N next to the movies they rated highest (the page opens on a
sample user's list); a new user who rates a few movies and is folded into the trained model at
once (no retraining; models that cannot fold in show the most popular movies and say so);
movies nearest to a chosen one. Every answer comes from `recstack.recommend.Recommender` as an
`ItemList`, whose score kind decides the column heading and how numbers are shown (a predicted
rating is clipped to the rating scale, a similarity is shown as it is). Users and movies are
found by typing, never by a list of every id, so large data sets work; `k` is clamped on the
server. The `answer_*` functions are plain Python (no Gradio) so that they can be tested
without a browser; `build_app` wires them to components with stable `elem_id`s (`user-id`,
`user-go`, `user-msg`, `user-recs`, `user-rated`, `new-search`, `new-search-go`, `new-pick`,
`new-rating`, `new-add`, `new-clear`, `new-rated`, `new-go`, `new-msg`, `new-recs`,
`sim-search`, `sim-search-go`, `sim-pick`, `sim-go`, `sim-msg`, `sim-recs`, `k`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recstack.errors import MissingExtraError, RecstackError
from recstack.itemlist import KIND_LABELS, ItemList
from recstack.models.base import has_ability
from recstack.recommend import Recommender

if TYPE_CHECKING:  # pragma: no cover
    import gradio

    from recstack.persist import SavedModel

REC_COLUMNS = ["#", "title", "year", "genres"]
K_MIN, K_MAX = 1, 50  # the page's slider range; requests outside it are clamped here
CSS = """
#header h1 { margin-bottom: 0.2em; }
.msg p { font-size: 1.02em; }
.gradio-container [role="grid"] span { font-family: var(--font); }
"""


def _gradio() -> Any:
    """Import Gradio lazily, with analytics off; a clear error when the extra is missing."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"the web page needs Gradio ({exc}); install the [web] extra: pip install 'recstack[web]'"
        ) from None
    return gradio


# ---- formatting -----------------------------------------------------------------------------
def item_table(items: ItemList | list[dict[str, Any]], score_label: str | None,
               because: list[str] | None = None) -> pd.DataFrame:
    """An `ItemList` (or rows of one) as a display table: #, title, year, genres, score.

    Scores are the list's display scores (a rating estimate clipped to the scale, a similarity
    as it is) with two decimals; a user's own rating ("rating", "your rating") as given (4, not 4.00).
    `because`, one text per row, adds the explanation column ("because you rated").
    """
    rows = items.rows() if isinstance(items, ItemList) else items
    columns = REC_COLUMNS + ([score_label] if score_label else []) + (["because you rated"] if because else [])
    out = []
    for n, row in enumerate(rows, 1):
        year = row.get("year")
        line = [row.get("rank", n), row.get("title", row.get("label", row.get("item"))),
                "" if year is None else str(year), ", ".join(row.get("genres") or [])]
        if score_label:
            score = row.get("score")
            given = score_label in ("rating", "your rating")
            line.append("" if score is None else f"{score:g}" if given else f"{score:.2f}")
        if because:
            line.append(because[n - 1])
        out.append(line)
    return pd.DataFrame(out, columns=columns)


def _score_label(rec: Recommender) -> str:
    return KIND_LABELS[rec.model.score_kind]


def clamp_k(k: Any) -> int:
    """The number of movies asked for, as an int in [K_MIN, K_MAX] (the page never trusts its input)."""
    try:
        n = int(float(k))
    except (TypeError, ValueError):
        n = 10
    return max(K_MIN, min(K_MAX, n))


def sample_user(rec: Recommender) -> str | None:
    """The user the page opens with: the most active one (ties: lowest index)."""
    if rec.train.n_users == 0:
        return None
    return str(rec.train.user_ids[int(rec.train.user_activity.argmax())])


def describe_model(rec: Recommender) -> str:
    """One Markdown line naming the model and the data it was trained on."""
    info, train = rec.info, rec.train
    config = info.get("config", {})
    extra = f", {config['factors']} factors" if "factors" in config else ""
    return (f"Model **{rec.model.name}**{extra}, trained on **{train.name}**: "
            f"{train.n_users:,} users, {train.n_items:,} movies, {len(train):,} ratings.")


def describe_user(rec: Recommender, user_id: str) -> str:
    """'User 196 — 49, M, writer — rated 39 movies.' (demographics where the data has them)."""
    train = rec.train
    u = train.user_of(user_id)
    parts = [f"User **{user_id}**"]
    f = train.user_features
    if f is not None:
        traits = [str(f[c].iloc[u]) for c in ("age", "gender", "occupation")
                  if c in f and not pd.isna(f[c].iloc[u])]
        if traits:
            parts.append(", ".join(traits))
    parts.append(f"rated {int(train.csr[u].nnz):,} movies")
    return " — ".join(parts) + "."


# ---- answers (plain Python; the page calls these) ---------------------------------------------
def answer_user(rec: Recommender, user_id: str | None, k: Any) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """(message, top-k table, highest-rated table) for an existing user id typed in."""
    label = _score_label(rec)
    k = clamp_k(k)
    uid = (user_id or "").strip()
    empty_recs, empty_rated = item_table([], label), item_table([], "rating")
    if not uid:
        return "Type a user id first.", empty_recs, empty_rated
    if uid not in rec.train.user_index:
        result = rec.for_user(uid, k, fallback="popular")
        msg = (f"Unknown user id **{uid}**: this model knows {rec.train.n_users:,} users. "
               "Showing the most popular movies instead.")
        return msg, item_table(result, None), empty_rated
    try:
        result = rec.for_user(uid, k)
        rated = rec.rated_by(uid, k)
    except RecstackError as exc:
        return f"Cannot recommend: {exc}", empty_recs, empty_rated
    because = explain_rows(rec, uid, result)
    return describe_user(rec, uid), item_table(result, result.label, because), item_table(rated, "rating")


def explain_rows(rec: Recommender, user_id: str, items: ItemList) -> list[str] | None:
    """"X and Y" per recommended item — the user's rated movies that raise its score the most —
    for models with the explains ability, else None."""
    if not has_ability(rec.model, "explains") or items.fallback:
        return None
    return [because_text(rec.explain(user_id, i)) for i in items.ids.tolist()]


def because_text(explanation: dict[str, Any]) -> str:
    """"X and Y": the (at most two) rated items that raise the score most, from an explanation
    (`Recommender.explain`, or the service's with its `because`); " (hint)" is added when the
    explanation is a hint (e.g. attention), not an exact sum."""
    labels = explanation.get("because")
    if labels is None:
        labels = [p["label"] for p in explanation.get("parts", []) if "item" in p and p["contribution"] > 0][:2]
    text = " and ".join(labels)
    return f"{text} (hint)" if text and explanation.get("exact") is False else text


def answer_search(rec: Recommender, query: str | None) -> tuple[str, list[tuple[str, str]], str | None]:
    """(message, dropdown choices (label, item id), first item id) for a title search."""
    q = (query or "").strip()
    if not q:
        return "Type part of a movie title to search.", [], None
    hits = rec.search(q, limit=25)
    if not hits:
        return f"No movie title contains **{q}**.", [], None
    choices = [(h["label"], h["item"]) for h in hits]
    more = " (showing the 25 most rated)" if len(hits) == 25 else ""
    return f"{len(hits)} movies match **{q}**{more}; pick one and rate it.", choices, choices[0][1]


def answer_add(rec: Recommender, ratings: dict[str, float] | None, item_id: str | None,
               rating: float) -> tuple[str, dict[str, float], pd.DataFrame]:
    """Add (or change) one rating of the new user: (message, ratings, table of ratings)."""
    ratings = dict(ratings or {})
    if not item_id:
        return "Search for a movie and pick it before adding a rating.", ratings, ratings_table(rec, ratings)
    try:
        index = rec.train.item_of(item_id)
    except RecstackError as exc:
        return f"Cannot add: {exc}", ratings, ratings_table(rec, ratings)
    ratings[str(item_id)] = float(rating)
    msg = (f"Rated **{rec.labels[index]}** {float(rating):g}. {len(ratings)} rating"
           f"{'s' if len(ratings) != 1 else ''} so far; add more or get recommendations.")
    return msg, ratings, ratings_table(rec, ratings)


def ratings_table(rec: Recommender, ratings: dict[str, float]) -> pd.DataFrame:
    rows = [dict(rec.item_row(rec.train.item_of(i)), score=r) for i, r in ratings.items()]
    return item_table(ItemList.from_rows(rows, "rating"), "your rating")


def answer_new_user(rec: Recommender, ratings: dict[str, float] | None, k: Any) -> tuple[str, pd.DataFrame]:
    """(message, top-k table) for the new user, folded into the trained model — or, for a model
    that cannot fold in, the most popular movies they have not rated, saying so."""
    label = _score_label(rec)
    if not ratings:
        return "Rate at least one movie first (search, pick, rate, add).", item_table([], label)
    try:
        result = rec.for_new_user(ratings, clamp_k(k))
    except RecstackError as exc:
        return f"Cannot recommend: {exc}", item_table([], label)
    n = len(ratings)
    if result.fallback:
        return (f"Model **{rec.model.name}** cannot fold in a new user, so this is not personal: "
                f"showing the most popular movies you have not rated ({n} rating{'s' if n != 1 else ''} "
                "taken into account only to leave them out)."), item_table(result, None)
    msg = f"Recommendations from your {n} rating{'s' if n != 1 else ''}, folded into the trained model."
    return msg, item_table(result, result.label)


def answer_similar(rec: Recommender, item_id: str | None, k: Any) -> tuple[str, pd.DataFrame]:
    """(message, table of the k movies nearest to `item_id` by the model's own similarity)."""
    if not item_id:
        return "Choose a movie first.", item_table([], "similarity")
    try:
        result = rec.similar(item_id, clamp_k(k))
    except RecstackError as exc:
        return f"Cannot find similar movies: {exc}", item_table([], "similarity")
    return (f"Movies nearest to **{result.item['label']}** by the model's item similarity.",
            item_table(result, result.label))


# ---- the page -----------------------------------------------------------------------------------
def build_app(saved: SavedModel) -> gradio.Blocks:
    """The Gradio page for one saved model (call `.launch()` on it, or use `launch`)."""
    gr = _gradio()
    rec = Recommender(saved)
    label = _score_label(rec)
    first_user = sample_user(rec)

    def table(headers_label: str | None, elem_id: str, title: str, explained: bool = False) -> Any:
        widths = ["7%", "45%", "10%", "24%", "14%"] if headers_label else ["7%", "55%", "10%", "28%"]
        empty = item_table([], headers_label)
        if explained:
            widths = ["5%", "28%", "7%", "17%", "10%", "33%"]
            empty["because you rated"] = []
        return gr.Dataframe(value=empty, label=title, elem_id=elem_id,
                            interactive=False, wrap=True, max_height=720, column_widths=widths)

    with gr.Blocks(title="recstack · movie recommendations", fill_width=True) as app:
        gr.Markdown("# recstack · movie recommendations\n" + describe_model(rec), elem_id="header")
        k = gr.Slider(K_MIN, K_MAX, value=10, step=1, label="how many movies", elem_id="k")
        with gr.Tabs():
            with gr.Tab("Existing user", id="tab-user"):
                with gr.Row(equal_height=True):
                    user = gr.Textbox(value=first_user, label=f"user id ({rec.train.n_users:,} users)",
                                      placeholder=f"e.g. {first_user}", elem_id="user-id", scale=3)
                    user_go = gr.Button("Recommend", variant="primary", elem_id="user-go", scale=1)
                user_msg = gr.Markdown(elem_id="user-msg", elem_classes="msg")
                with gr.Row():
                    user_recs = table(label, "user-recs", "recommended for this user (unseen movies)",
                                      explained=has_ability(rec.model, "explains"))
                    user_rated = table("rating", "user-rated", "movies this user rated highest")
            with gr.Tab("New user", id="tab-new"):
                ratings = gr.State({})
                with gr.Row(equal_height=True):
                    search = gr.Textbox(label="search a movie title", placeholder="e.g. star wars",
                                        elem_id="new-search", scale=3)
                    search_go = gr.Button("Search", elem_id="new-search-go", scale=1)
                with gr.Row(equal_height=True):
                    pick = gr.Dropdown([], value=None, label="movie", elem_id="new-pick", scale=3)
                    stars = gr.Slider(1, 5, value=4, step=1, label="your rating", elem_id="new-rating", scale=2)
                    add = gr.Button("Add rating", elem_id="new-add", scale=1)
                new_msg = gr.Markdown(elem_id="new-msg", elem_classes="msg")
                with gr.Row():
                    with gr.Column():
                        rated = table("your rating", "new-rated", "your ratings")
                        with gr.Row():
                            new_go = gr.Button("Recommend for me", variant="primary", elem_id="new-go")
                            clear = gr.Button("Start over", elem_id="new-clear")
                    new_recs = table(label, "new-recs", "recommended for you (no retraining)")
            with gr.Tab("Similar movies", id="tab-sim"):
                with gr.Row(equal_height=True):
                    sim_search = gr.Textbox(label="search a movie title", placeholder="e.g. star wars",
                                            elem_id="sim-search", scale=3)
                    sim_search_go = gr.Button("Search", elem_id="sim-search-go", scale=1)
                with gr.Row(equal_height=True):
                    sim_pick = gr.Dropdown([], value=None, label="movie", elem_id="sim-pick", scale=3)
                    sim_go = gr.Button("Find similar", variant="primary", elem_id="sim-go", scale=1)
                sim_msg = gr.Markdown(elem_id="sim-msg", elem_classes="msg")
                sim_recs = table("similarity", "sim-recs", "nearest movies by the model's item similarity")

        def on_user(uid: str | None, n: float) -> tuple[Any, ...]:
            return answer_user(rec, uid, n)

        def on_search(q: str) -> tuple[Any, ...]:
            msg, choices, first = answer_search(rec, q)
            return msg, gr.Dropdown(choices=choices, value=first)

        def on_sim_search(q: str) -> tuple[Any, ...]:
            msg, choices, first = answer_search(rec, q)
            return msg.replace("; pick one and rate it", "; pick one"), gr.Dropdown(choices=choices, value=first)

        def on_add(state: dict, item: str | None, r: float) -> tuple[Any, ...]:
            return answer_add(rec, state, item, r)

        def on_new(state: dict, n: float) -> tuple[Any, ...]:
            return answer_new_user(rec, state, n)

        def on_clear() -> tuple[Any, ...]:
            return "Ratings cleared.", {}, ratings_table(rec, {}), item_table([], label)

        def on_similar(item: str | None, n: float) -> tuple[Any, ...]:
            return answer_similar(rec, item, n)

        user_go.click(on_user, [user, k], [user_msg, user_recs, user_rated])
        user.submit(on_user, [user, k], [user_msg, user_recs, user_rated])
        app.load(on_user, [user, k], [user_msg, user_recs, user_rated])  # a first visit shows a list
        search_go.click(on_search, [search], [new_msg, pick])
        search.submit(on_search, [search], [new_msg, pick])
        add.click(on_add, [ratings, pick, stars], [new_msg, ratings, rated])
        new_go.click(on_new, [ratings, k], [new_msg, new_recs])
        clear.click(on_clear, None, [new_msg, ratings, rated, new_recs])
        sim_search_go.click(on_sim_search, [sim_search], [sim_msg, sim_pick])
        sim_search.submit(on_sim_search, [sim_search], [sim_msg, sim_pick])
        sim_go.click(on_similar, [sim_pick, k], [sim_msg, sim_recs])
    return app


def _theme(gr: Any) -> Any:
    """The default theme with system fonts (no font downloads: the page works offline)."""
    system = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]
    return gr.themes.Default(font=system, font_mono=mono)


def launch(model_dir: str | Path, host: str = "127.0.0.1", port: int = 7860,
           prevent_thread_lock: bool = False) -> gradio.Blocks:
    """Load the model folder and serve its page at http://host:port (the URL goes to stderr).

    With `prevent_thread_lock=True` the server runs in a background thread and the app is
    returned at once (call `.close()` on it to stop).
    """
    from recstack.persist import load_model

    return serve_page(build_app(load_model(model_dir)), f"serving {model_dir}", host, port, prevent_thread_lock)


def serve_page(app: gradio.Blocks, what: str, host: str, port: int, prevent_thread_lock: bool) -> gradio.Blocks:
    """Serve a built page on http://host:port with our theme, say so on stderr (`what` names the
    source), and block until Ctrl+C unless `prevent_thread_lock`."""
    gr = _gradio()
    try:
        app.launch(server_name=host, server_port=port, share=False, quiet=True, ssr_mode=False,
                   prevent_thread_lock=True, theme=_theme(gr), css=CSS, footer_links=[])
    except OSError as exc:  # the port is taken or the host cannot be bound
        raise RecstackError(f"cannot serve on {host}:{port} ({exc}); choose another --port") from None
    print(f"recstack web: {what} at http://{host}:{port}/ (Ctrl+C to stop)", file=sys.stderr, flush=True)
    if not prevent_thread_lock:
        try:
            app.block_thread()
        finally:
            app.close()
    return app
