"""The web page on the HTTP service (`recstack web --api URL`): every answer comes from the service.

One tab shows a user's recommendations with their explanations ("because you rated X and Y"),
lets the visitor rate an item (a rating event POSTed to the service, after which the list is
fetched again, so it changes at once) and edit the user's preferences (genres never to show,
diversity λ, novelty ν; PUT to the service, which applies them to every list it serves that
user). A second tab shows the service's A/B experiments: per-variant users, exposures and means
with their confidence intervals, the lift, the verdict, the sample-ratio check and the plot of
cumulative lift; a service without experiment endpoints (404) gets a message, not an error.

Writes carry the service's API key (`RECSTACK_API_KEY` or `--api-key-file`). The `answer_*`
functions are plain Python over a `ServiceClient`; `build_remote_app` wires them to components
with stable `elem_id`s: `api-user`, `api-go`, `api-msg`, `api-recs`, `api-pick`, `api-rating`,
`api-add`, `pref-genres`, `pref-diversity`, `pref-novelty`, `pref-save`, `pref-msg`, `ab-refresh`,
`ab-pick`, `ab-go`, `ab-msg`, `ab-variants`, `ab-plot`, `api-k`.
"""

from __future__ import annotations

import base64
import html
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recstack.errors import ConfigError, RecstackError
from recstack.web.app import K_MAX, K_MIN, _gradio, because_text, clamp_k, item_table, serve_page

TIMEOUT = 30.0
VARIANT_COLUMNS = ["variant", "users", "exposures", "mean", "95% CI"]


class ServiceError(RecstackError):
    """The service could not be reached or answered with an error; `status` is its HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServiceClient:
    """A small JSON client of the recstack service (urllib; the key goes only in the header)."""

    url: str
    api_key: str | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--api {self.url!r}: give the service's base URL, e.g. http://127.0.0.1:8000")
        self.url = self.url.rstrip("/")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                raw: bool = False) -> Any:
        """The decoded JSON answer (bytes when `raw`); a `ServiceError` naming the status and detail."""
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key and method != "GET":
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{method} {path}: {exc.code} {_detail(exc.read())}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"cannot reach the service at {self.url} ({reason})") from None
        return payload if raw else json.loads(payload)

    # ---- the calls the page makes ----------------------------------------------------------
    def recommendations(self, user: str, k: int) -> dict[str, Any]:
        return self.request("GET", f"/users/{_quote(user)}/recommendations", {"k": k, "explain": "true"})

    def add_rating(self, user: str, item: str, value: float) -> dict[str, Any]:
        event = {"event_id": f"web-{uuid.uuid4().hex}", "item": item, "type": "rating", "value": float(value),
                 "timestamp": int(time.time())}
        return self.request("POST", f"/users/{_quote(user)}/events", body={"events": [event]})

    def preferences(self, user: str) -> dict[str, Any]:
        return self.request("GET", f"/users/{_quote(user)}/preferences")

    def put_preferences(self, user: str, prefs: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/users/{_quote(user)}/preferences", body=prefs)

    def item(self, item: str) -> dict[str, Any]:
        return self.request("GET", f"/items/{_quote(item)}")

    def ready(self) -> dict[str, Any]:
        return self.request("GET", "/ready")

    def experiments(self) -> list[dict[str, Any]] | None:
        """The service's experiments; None when it has no experiment endpoints (404)."""
        try:
            return list(self.request("GET", "/experiments").get("experiments", []))
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise

    def report(self, experiment: str) -> dict[str, Any]:
        return self.request("GET", f"/experiments/{_quote(experiment)}/report")

    def lift_png(self, experiment: str) -> bytes | None:
        """The cumulative-lift plot; None when the service has none for this experiment (404)."""
        try:
            return self.request("GET", f"/experiments/{_quote(experiment)}/lift.png", raw=True)
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise


def _quote(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def _detail(payload: bytes) -> str:
    """The service's `detail` as one line (FastAPI's 422 list: "field: message; …")."""
    try:
        detail = json.loads(payload).get("detail", "")
    except (ValueError, AttributeError):
        return payload[:200].decode("utf-8", "replace")
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg', '')}" for d in detail)
    return str(detail)


# ---- answers (plain Python; the page calls these) ---------------------------------------------
def recs_table(body: dict[str, Any]) -> pd.DataFrame:
    """The service's list as a display table, with the "because you rated" column when explained."""
    rows = body.get("items", [])
    explained = any(r.get("explanation") for r in rows)
    because = [because_text({"because": [], **(r.get("explanation") or {})}) for r in rows] if explained else None
    label = None if body.get("fallback") else _SCORE_LABELS.get(body.get("score_kind", ""), "score")
    return item_table(rows, label, because)


_SCORE_LABELS = {"rating": "predicted rating", "ranking": "score", "similarity": "similarity",
                 "probability": "probability"}


def picks(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, item id) of the listed items: what the visitor can rate next."""
    return [(str(r.get("label", r["item"])), str(r["item"])) for r in body.get("items", [])]


def answer_recs(client: ServiceClient, user: str | None, k: Any) -> tuple[str, pd.DataFrame, list[tuple[str, str]]]:
    """(message, table, items to rate) for a user id typed in."""
    uid = (user or "").strip()
    if not uid:
        return "Type a user id first.", recs_table({}), []
    try:
        body = client.recommendations(uid, clamp_k(k))
    except ServiceError as exc:
        return f"Cannot recommend: {exc}", recs_table({}), []
    version = body.get("model_version")
    served = f" (model version {version})" if version is not None else ""
    if body.get("fallback"):
        msg = f"User **{uid}**: {body.get('fallback_reason') or 'the most popular items'}{served}."
    else:
        msg = f"Recommendations for user **{uid}** from the service{served}."
    return msg, recs_table(body), picks(body)


def answer_rate(client: ServiceClient, user: str | None, item: str | None, value: float,
                k: Any) -> tuple[str, pd.DataFrame, list[tuple[str, str]]]:
    """POST one rating event for the user, then the list as the service now serves it."""
    uid, iid = (user or "").strip(), (item or "").strip()
    if not uid or not iid:
        msg, table, choices = answer_recs(client, uid, k) if uid else ("", recs_table({}), [])
        return ("Type a user id and pick an item before adding a rating." + (" " + msg if msg else ""),
                table, choices)
    try:
        meta = client.item(iid)
        client.add_rating(uid, iid, float(value))
    except ServiceError as exc:
        msg, table, choices = answer_recs(client, uid, k)
        return f"Cannot add the rating: {exc}", table, choices
    msg, table, choices = answer_recs(client, uid, k)
    return f"Rated **{meta.get('label', iid)}** {float(value):g}; the list below is the service's answer now.", \
        table, choices


def answer_prefs(client: ServiceClient, user: str | None) -> tuple[list[str], list[str], float, float, str]:
    """(known genres, excluded genres, diversity, novelty, message) stored for the user."""
    uid = (user or "").strip()
    if not uid:
        return [], [], 0.0, 0.0, ""
    try:
        p = client.preferences(uid)
    except ServiceError as exc:
        return [], [], 0.0, 0.0, f"Cannot read the preferences: {exc}"
    state = "stored preferences" if p.get("stored") else "no preferences stored yet (the defaults)"
    return (list(p.get("known_genres", [])), list(p.get("exclude_genres", [])), float(p.get("diversity", 0.0)),
            float(p.get("novelty", 0.0)), f"User **{uid}**: {state}.")


def answer_save_prefs(client: ServiceClient, user: str | None, genres: list[str] | None, diversity: float,
                      novelty: float, k: Any) -> tuple[str, str, pd.DataFrame, list[tuple[str, str]]]:
    """PUT the preferences, then (preferences message, list message, table, items to rate)."""
    uid = (user or "").strip()
    if not uid:
        return "Type a user id first.", "", recs_table({}), []
    prefs = {"exclude_genres": list(genres or []), "diversity": float(diversity), "novelty": float(novelty)}
    try:
        saved = client.put_preferences(uid, prefs)
    except ServiceError as exc:
        msg, table, choices = answer_recs(client, uid, k)
        return f"Cannot save the preferences: {exc}", msg, table, choices
    hidden = ", ".join(saved["exclude_genres"]) or "none"
    note = (f"Saved for user **{uid}**: genres hidden: {hidden}; diversity {saved['diversity']:g}; "
            f"novelty {saved['novelty']:g}.")
    msg, table, choices = answer_recs(client, uid, k)
    return note, msg, table, choices


def answer_experiments(client: ServiceClient) -> tuple[str, list[tuple[str, str]]]:
    """(message, experiments as (label, id)) — a message when the service has no A/B endpoints."""
    try:
        found = client.experiments()
    except ServiceError as exc:
        return f"Cannot list experiments: {exc}", []
    if found is None:
        return ("This service has no A/B experiment endpoints (GET /experiments answered 404): "
                "run a recstack version with A/B testing."), []
    if not found:
        return "No experiments yet: create one with `recstack ab create` or the admin API.", []
    choices = [(f"{e.get('name', e['id'])} · {e.get('status', '?')}", str(e["id"])) for e in found]
    return f"{len(found)} experiment{'s' if len(found) != 1 else ''}; pick one for its report.", choices


def answer_report(client: ServiceClient, experiment: str | None) -> tuple[str, pd.DataFrame, str]:
    """(summary markdown, per-variant table, plot HTML) for one experiment."""
    empty = pd.DataFrame([], columns=VARIANT_COLUMNS)
    if not experiment:
        return "Pick an experiment first.", empty, ""
    try:
        rep = client.report(experiment)
    except ServiceError as exc:
        if exc.status == 404:
            return f"No report for experiment {experiment!r} (the service answered 404).", empty, ""
        return f"Cannot read the report: {exc}", empty, ""
    rows = [[v.get("name"), v.get("users"), v.get("exposures"), _num(v.get("mean")), _ci(v.get("ci"))]
            for v in rep.get("variants", [])]
    lines = [f"**Verdict:** {_text(rep.get('verdict'))}", f"**Lift:** {_lift(rep.get('lift'))}",
             f"**Sample-ratio check:** {_srm(rep.get('srm'))}"]
    try:
        png = client.lift_png(experiment)
    except ServiceError as exc:
        png, lines = None, [*lines, f"(the plot could not be read: {exc})"]
    plot = ("" if png is None else
            f'<img alt="cumulative lift" src="data:image/png;base64,{base64.b64encode(png).decode()}" '
            'style="max-width:100%">')
    return "  \n".join(lines), pd.DataFrame(rows, columns=VARIANT_COLUMNS), plot


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.4g}" if isinstance(x, (int, float)) else str(x)


def _ci(ci: Any) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"[{_num(ci[0])}, {_num(ci[1])}]"
    return _num(ci)


def _lift(lift: Any) -> str:
    if isinstance(lift, dict):
        value = lift.get("relative", lift.get("value", lift.get("lift")))
        ci = lift.get("ci")
        p = lift.get("p_value")
        text = f"{value:+.2%}" if isinstance(value, (int, float)) else _text(value)
        text += (f", 95% CI {_ci([f'{c:+.2%}' if isinstance(c, (int, float)) else c for c in ci])}"
                 if isinstance(ci, (list, tuple)) and len(ci) == 2 else "")
        return text + (f" (p = {p:.3g})" if isinstance(p, (int, float)) else "")
    return f"{lift:+.2%}" if isinstance(lift, (int, float)) else _text(lift)


def _srm(srm: Any) -> str:
    """The sample-ratio check: its warning when the shares are off, else the chi-square p-value."""
    if not isinstance(srm, dict):
        return _text(srm)
    if srm.get("warning") or srm.get("mismatch"):
        return "⚠ " + _text(srm.get("warning") or "sample ratio mismatch")
    p = srm.get("p_value", srm.get("p"))
    return "no mismatch" + (f" (chi-square p = {p:.3g})" if isinstance(p, (int, float)) else "")


def _text(x: Any) -> str:
    """A report field for Markdown: a dict as `key: value` pairs, text escaped."""
    if x is None:
        return "—"
    if isinstance(x, dict):
        return html.escape(", ".join(f"{k}: {_num(v) if isinstance(v, float) else v}" for k, v in x.items()))
    return html.escape(str(x))


# ---- the page -----------------------------------------------------------------------------------
def build_remote_app(client: ServiceClient, first_user: str = "1") -> Any:
    """The Gradio page over the service at `client.url` (call `.launch()` on it, or use `launch_remote`)."""
    gr = _gradio()
    try:
        ready = client.ready()
        version = ready.get("model_version")
        where = f"model version {version}" if version is not None else "a model folder (no registry)"
    except ServiceError as exc:
        where = f"not reachable yet ({exc})"

    def recs_component() -> Any:
        empty = item_table([], "score")
        empty["because you rated"] = []
        return gr.Dataframe(value=empty, label="recommended for this user, by the service", elem_id="api-recs",
                            interactive=False, wrap=True, max_height=720,
                            column_widths=["5%", "28%", "7%", "17%", "10%", "33%"])

    with gr.Blocks(title="recstack · recommendations from the service", fill_width=True) as app:
        gr.Markdown(f"# recstack · recommendations from the service\nServed by **{client.url}**: {where}.",
                    elem_id="header")
        with gr.Tabs():
            with gr.Tab("Recommendations", id="tab-api"):
                with gr.Row(equal_height=True):
                    user = gr.Textbox(value=first_user, label="user id", elem_id="api-user", scale=3)
                    k = gr.Slider(K_MIN, K_MAX, value=10, step=1, label="how many", elem_id="api-k", scale=2)
                    go = gr.Button("Recommend", variant="primary", elem_id="api-go", scale=1)
                msg = gr.Markdown(elem_id="api-msg", elem_classes="msg")
                with gr.Row():
                    with gr.Column(scale=3):
                        recs = recs_component()
                        with gr.Row(equal_height=True):
                            pick = gr.Dropdown([], value=None, label="rate an item (or type an item id)",
                                               allow_custom_value=True, elem_id="api-pick", scale=3)
                            stars = gr.Slider(1, 5, value=5, step=1, label="rating", elem_id="api-rating", scale=2)
                            add = gr.Button("Add rating", elem_id="api-add", scale=1)
                    with gr.Column(scale=1):
                        gr.Markdown("### Preferences\nApplied by the service to every list it serves this user.")
                        genres = gr.CheckboxGroup([], value=[], label="genres never to show", elem_id="pref-genres")
                        diversity = gr.Slider(0, 1, value=0, step=0.05, label="diversity λ (0: relevance only)",
                                              elem_id="pref-diversity")
                        novelty = gr.Slider(0, 1, value=0, step=0.05, label="novelty ν (0: no popularity penalty)",
                                            elem_id="pref-novelty")
                        save = gr.Button("Save preferences", elem_id="pref-save")
                        pref_msg = gr.Markdown(elem_id="pref-msg", elem_classes="msg")
            with gr.Tab("A/B tests", id="tab-ab"):
                with gr.Row(equal_height=True):
                    refresh = gr.Button("List experiments", elem_id="ab-refresh", scale=1)
                    exp = gr.Dropdown([], value=None, label="experiment", elem_id="ab-pick", scale=3)
                    show = gr.Button("Show report", variant="primary", elem_id="ab-go", scale=1)
                ab_msg = gr.Markdown(elem_id="ab-msg", elem_classes="msg")
                variants = gr.Dataframe(value=pd.DataFrame([], columns=VARIANT_COLUMNS), label="variants",
                                        elem_id="ab-variants", interactive=False, wrap=True)
                plot = gr.HTML(elem_id="ab-plot")

        def dropdown(choices: list[tuple[str, str]]) -> Any:
            return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

        def on_user(uid: str | None, n: float) -> tuple[Any, ...]:
            m, table, choices = answer_recs(client, uid, n)
            known, excluded, div, nov, note = answer_prefs(client, uid)
            return (m, table, dropdown(choices), gr.CheckboxGroup(choices=known, value=excluded), div, nov, note)

        def on_add(uid: str | None, item: str | None, r: float, n: float) -> tuple[Any, ...]:
            m, table, choices = answer_rate(client, uid, item, r, n)
            return m, table, dropdown(choices)

        def on_save(uid: str | None, g: list[str], div: float, nov: float, n: float) -> tuple[Any, ...]:
            note, m, table, choices = answer_save_prefs(client, uid, g, div, nov, n)
            return note, m, table, dropdown(choices)

        def on_refresh() -> tuple[Any, ...]:
            m, choices = answer_experiments(client)
            return m, dropdown(choices)

        def on_report(e: str | None) -> tuple[Any, ...]:
            return answer_report(client, e)

        user_out = [msg, recs, pick, genres, diversity, novelty, pref_msg]
        go.click(on_user, [user, k], user_out)
        user.submit(on_user, [user, k], user_out)
        app.load(on_user, [user, k], user_out)
        add.click(on_add, [user, pick, stars, k], [msg, recs, pick])
        save.click(on_save, [user, genres, diversity, novelty, k], [pref_msg, msg, recs, pick])
        refresh.click(on_refresh, None, [ab_msg, exp])
        show.click(on_report, [exp], [ab_msg, variants, plot])
    return app


def launch_remote(api: str, api_key: str | None = None, host: str = "127.0.0.1", port: int = 7860,
                  user: str = "1", prevent_thread_lock: bool = False) -> Any:
    """Serve the page over the service at `api` on http://host:port (see `recstack.web.app.launch`)."""
    return serve_page(build_remote_app(ServiceClient(api, api_key), first_user=user), f"the page over {api}",
                      host, port, prevent_thread_lock)
