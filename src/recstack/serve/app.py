"""The HTTP service: a FastAPI app factory with thin routes over `ModelState` (see service.py).

The registry's active version (or a plain model folder) loads in the lifespan hook, and the stored
events newer than its training data are applied before `/ready` answers 200. Writes and admin calls
need `Authorization: Bearer KEY` (RECSTACK_API_KEY or a key file; compared in constant time, never
logged); `open_writes` lifts that for event posts only. Request bodies over 1 MiB get 413, bad
parameters 422 naming the field; CORS is off (no CORS headers are ever sent).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from recstack.ab.serving import Experiments, serve_list
from recstack.errors import RecstackError, UnknownIdError
from recstack.itemlist import ItemList
from recstack.models.base import has_ability
from recstack.serve import prefs
from recstack.serve import schemas as S
from recstack.serve.experiments import add_experiment_routes
from recstack.serve.metrics import Metrics
from recstack.serve.registry import Registry, RegistryError, resolve_model_dir
from recstack.serve.service import ModelState, RecRequest
from recstack.serve.store import GroupCommit, Store, open_store

log = logging.getLogger("recstack.serve")

MAX_BODY = 1 << 20  # bytes
MAX_K = 1000
# query strings stay short enough that a fully percent-encoded request line fits uvicorn's 16 KiB limit
WORKER = str(os.getpid())  # names the worker process that answered (x-worker header)
_WORKER_HEADER = (b"x-worker", WORKER.encode())
# the recommendation query's bounds, shared by its FastAPI declaration and the hot path's parser
QUERY_INTS: dict[str, tuple[int, int]] = {"k": (1, MAX_K), "year_from": (0, 9999), "year_to": (0, 9999)}
QUERY_TEXTS: dict[str, int] = {"exclude": 800, "genres": 200}  # max characters
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
ID = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID, pattern=S.ID_PATTERN)]


@dataclass
class Settings:
    """What `recstack serve` passes to each worker (the key itself travels only in the environment)."""

    path: str
    db: str | None = None
    open_writes: bool = False
    api_key_file: str | None = None
    use_index: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        return cls(**json.loads(os.environ["RECSTACK_SERVE_SETTINGS"]))

    def api_key(self) -> str | None:
        key = os.environ.get("RECSTACK_API_KEY")
        if not key and self.api_key_file:
            key = Path(self.api_key_file).read_text().strip()
        return key or None


def default_db(path: str | Path) -> str:
    """The embedded default: events.db in the registry folder, else in the data directory."""
    from recstack.data.fetch import cache_root

    folder = Path(path) if Registry.is_registry(path) else cache_root()
    return f"sqlite:///{(folder / 'events.db').resolve()}"


class Service:
    """The process-wide state: store, registry, the published `ModelState`, readiness."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.commits: GroupCommit | None = None  # event posts, committed together under load
        self.registry = Registry(settings.path) if Registry.is_registry(settings.path) else None
        self.state: ModelState | None = None
        self.ready = False
        self._active_stamp: tuple[int, int] | None = None
        self._active_file = str(self.registry.root / "ACTIVE") if self.registry else ""
        self._swap_lock = asyncio.Lock()
        self.experiments: Experiments | None = None  # the A/B hook (recstack.ab.serving)
        self.variant_states: dict[int, ModelState] = {}  # model versions other variants serve
        self.metrics = Metrics.get()
        key = settings.api_key()
        self._key = key.encode() if key else None

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.store = await run_in_threadpool(open_store, self.settings.db or default_db(self.settings.path))
        self.commits = GroupCommit(self.store)
        self.experiments = Experiments(self.store)
        await self.swap(force_reload=True)
        self.ready = True

    async def stop(self) -> None:
        if self.experiments is not None:
            await run_in_threadpool(self.experiments.close)  # writes the queued exposures
        if self.commits is not None:
            self.commits.close()
        if self.store is not None:
            self.store.close()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._active_file)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    async def swap(self, force_reload: bool = False) -> ModelState:
        """Load the registry's active version (or the model folder) when it changed; publish it."""
        async with self._swap_lock:
            stamp = self._stamp() if self.registry else None
            if not force_reload and self.state is not None and stamp == self._active_stamp:
                return self.state
            model_dir, version = resolve_model_dir(self.settings.path)
            if force_reload or self.state is None or version != self.state.version:
                state = await run_in_threadpool(self._load, model_dir, version)
                self.state = state
                ann = 0 if state.index is None or state.index.exact_only else len(state.index)
                self.metrics.model_loaded(version, ann)
                log.info("serving model version %s from %s", version, model_dir)
                _settle_heap()
            self._active_stamp = stamp
            return self.state  # type: ignore[return-value]

    def _load(self, model_dir: Path, version: int | None) -> ModelState:
        state = ModelState.load(model_dir, version, use_index=self.settings.use_index)
        state.sync(self.store)  # type: ignore[arg-type]
        state.warm_up()
        return state

    async def current(self) -> ModelState:
        """The state to answer with: swapped if ACTIVE changed, with every stored event applied."""
        if self.state is None:
            raise HTTPException(503, "the model is not loaded yet")
        if self.registry is not None and self._stamp() != self._active_stamp:
            await self.swap()
        state = self.state
        applied = state.sync(self.store)  # type: ignore[arg-type]
        if applied:
            self.metrics.events_applied.inc(applied)
        return state

    async def serve_user(self, user: str, k: int, state: ModelState | None = None, **filters: Any) -> ItemList:
        """A user's list: the running experiment's variant for them (its model version, its
        re-ranking; the exposure is logged), else the active model's list (`state`: the current
        state when the caller has it already)."""
        state = state or await self.current()
        arm = None
        if self.experiments is not None:
            if self.experiments.due():  # the store is read in the thread pool, never on the event loop
                await run_in_threadpool(self.experiments.current)
            arm = self.experiments.arm(user)
        version = arm.variant.model_version if arm is not None else None
        if version is not None and version != state.version:
            variant_state = await self.version_state(version)
            if variant_state is None:  # not servable here: the default list, no exposure (SRM will show it)
                return state.for_user(user, k, **filters)
            state = variant_state
        out = serve_list(state, user, k, arm, **filters)
        if arm is not None:
            self.experiments.expose(arm, user, out)  # type: ignore[union-attr]
        return out

    async def version_state(self, version: int) -> ModelState | None:
        """A registered version's model state (loaded once, kept in step with the store), or None."""
        state = self.variant_states.get(version)
        if state is None:
            try:
                folder = self.registry.get(version).path  # type: ignore[union-attr]
                state = await run_in_threadpool(self._load, folder, version)
            except (AttributeError, RecstackError, OSError) as exc:
                log.error("experiment variant model version %s cannot be served: %s", version, exc)
                return None
            self.variant_states[version] = state
        state.sync(self.store)  # type: ignore[arg-type]
        return state

    async def recommend(self, request: RecRequest) -> ItemList:
        """`serve_user` for a request of the GET route (the fast path's and the route's one entry)."""
        return await self.serve_user(request.user, request.k, exclude_seen=request.exclude_seen,
                                     exclude=list(request.exclude), genres=list(request.genres),
                                     year_from=request.year_from, year_to=request.year_to)

    # ---- auth ----------------------------------------------------------------------------
    def check_key(self, request: Request, events: bool = False) -> None:
        if events and self.settings.open_writes:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = (self._key is not None and scheme.lower() == "bearer"
              and hmac.compare_digest(given.strip().encode(), self._key))
        if not ok:
            raise HTTPException(401, "a valid API key is needed: Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})


def _settle_heap() -> None:
    """Collect once and freeze what is left (the model, the libraries): the garbage collector's
    full passes then skip those objects — otherwise a pass over them stalls every request for
    ~0.1 s now and then. Called after each model load, when the previous model has been let go
    (unfrozen first, so that it can be collected)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Measure:
    """ASGI middleware: request count and latency per route template; an x-worker header (the pid)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_with_worker(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), _WORKER_HEADER]
            await send(message)

        try:
            await self.app(scope, receive, send_with_worker)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "unmatched"), scope.get("method", ""), status,
                                 time.perf_counter() - t0)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    await _too_large(send)
                    return
                has_body = has_body or value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:  # nothing to count (a GET): no wrappers
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = json.dumps({"detail": f"request body over {MAX_BODY} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json(obj: Any, status: int = 200) -> Response:
    """A JSON answer serialised once here (orjson; NaN becomes null); the routes' `response_model`
    documents its schema in OpenAPI without validating it again per request."""
    try:
        body = orjson.dumps(obj, default=str, option=_ORJSON)
    except orjson.JSONEncodeError:  # text that is not UTF-8 (a lone surrogate echoed from bad input)
        body = json.dumps(obj, default=str, ensure_ascii=True).encode()  # \u escapes: ASCII JSON
    return Response(body, status_code=status, media_type="application/json")


def _plain_query(query_string: bytes) -> dict[str, Any] | None:
    """The recommendation query's parameters when each one is plainly valid, else None.

    A strict subset of what the FastAPI declaration accepts (each key once, non-empty, digits for
    integers within QUERY_INTS, true/false/1/0, texts within QUERY_TEXTS, no other keys), so
    anything unusual or wrong goes to the FastAPI route, which validates it and names the field."""
    out: dict[str, Any] = {}
    if not query_string:
        return out
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in out or not value:
            return None
        if key in QUERY_INTS:
            lo, hi = QUERY_INTS[key]
            if not (value.isascii() and value.isdigit() and len(value) <= 6 and lo <= int(value) <= hi):
                return None
            out[key] = int(value)
        elif key == "exclude_seen":
            if value not in _BOOLS:
                return None
            out[key] = _BOOLS[value]
        elif key in QUERY_TEXTS:
            if len(value) > QUERY_TEXTS[key]:
                return None
            out[key] = value
        else:
            return None
    return out


class HotPath(Route):
    """GET /users/{user}/recommendations, answered without FastAPI's per-request parameter
    machinery (most of the cost of a request otherwise). Registered just before the documented
    FastAPI route with the same path: a request whose user id and query `_plain_query` accepts is
    answered here through `Service.recommend`, as the FastAPI route would answer it; any other
    request (and every other method) goes on to that route, which owns validation, 422s and OpenAPI."""

    def __init__(self, path: str, service: Service) -> None:
        super().__init__(path, self._asgi, methods=["GET"], include_in_schema=False)
        self.app = self._asgi  # a plain ASGI callable, not a request/response function
        self.service = service
        self.documented: Any = None  # the FastAPI route, set once it exists

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        return super().matches(scope)

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope["path_params"]["user"]
        params = _plain_query(scope["query_string"]) if 0 < len(user) <= S.MAX_ID and "\x00" not in user else None
        if params is None:
            match, child = self.documented.matches(scope)
            scope.update(child)
            await self.documented.handle(scope, receive, send)
            return
        scope["route"] = self.documented  # metrics name the route template either way
        request = RecRequest(user, params.get("k", 10), params.get("exclude_seen", True),
                             tuple(_split(params.get("exclude"))), tuple(_split(params.get("genres"))),
                             params.get("year_from"), params.get("year_to"))
        items = await self.service.recommend(request)
        await _json(items.to_dict())(scope, receive, send)


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _explained(state: ModelState, user: str, item: str) -> dict[str, Any] | None:
    """A list row's explanation: score, the five largest parts, "because" labels; None when the
    model cannot explain this user."""
    try:
        return state.explain(user, item, top=5)
    except RecstackError:
        return None


def _prefs_out(state: ModelState, user: str, data: dict[str, Any] | None) -> dict[str, Any]:
    return {"user": user, **prefs.DEFAULTS, **(data or {}), "stored": data is not None,
            "known_genres": sorted(state.genre_names.values())}


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app for one worker process."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="recstack", version="1", lifespan=lifespan,
                  responses={400: {"model": S.Detail, "description": "bad request (unparsable body, bad id)"},
                             413: {"model": S.Detail, "description": "request body over 1 MiB"}},
                  description="Recommendations over HTTP: top-k, similar items, events, model registry.")
    app.state.service = service
    metrics = service.metrics

    @app.exception_handler(UnknownIdError)
    async def unknown(_: Request, exc: UnknownIdError) -> Response:
        return _json({"detail": str(exc)}, 404)

    @app.exception_handler(RecstackError)
    async def bad(_: Request, exc: RecstackError) -> Response:
        code = 409 if isinstance(exc, RegistryError) and "worse" in str(exc) else 400
        return _json({"detail": str(exc)}, code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        """FastAPI's 422 (each error names the field), written so that echoing an input that is
        not valid UTF-8 (a lone surrogate in a JSON string) cannot fail."""
        return _json({"detail": jsonable_encoder(exc.errors())}, 422)

    # async: a plain `def` dependency would cost a thread-pool round trip per request
    async def writer(request: Request) -> None:
        service.check_key(request)

    async def event_writer(request: Request) -> None:
        service.check_key(request, events=True)

    # ---- status --------------------------------------------------------------------------
    @app.get("/health", response_model=S.Health)
    async def health() -> Any:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", response_model=S.Ready, responses={503: {"model": S.Ready}})
    async def ready() -> Any:
        """200 once the model is loaded and the stored events are applied, else 503."""
        state = service.state
        body = {"ready": service.ready, "model_version": state.version if state else None,
                "applied_seq": state.applied_seq if state else 0}
        return _json(body, 200 if service.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus text: requests and latency per route, events stored, model version, index size."""
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    # ---- recommendations -----------------------------------------------------------------
    hot = HotPath("/users/{user}/recommendations", service)
    app.router.routes.insert(0, hot)  # first (it matches only this path), before the documented route

    @app.get("/users/{user}/recommendations", response_model=S.ItemListOut)
    async def user_recommendations(
        user: ID,
        k: Annotated[int, Query(ge=QUERY_INTS["k"][0], le=QUERY_INTS["k"][1])] = 10,
        exclude_seen: bool = True,
        exclude: Annotated[str | None, Query(max_length=QUERY_TEXTS["exclude"],
                                             description="item ids, comma-separated")] = None,
        genres: Annotated[str | None, Query(max_length=QUERY_TEXTS["genres"],
                                            description="genres, comma-separated")] = None,
        year_from: Annotated[int | None, Query(ge=QUERY_INTS["year_from"][0], le=QUERY_INTS["year_from"][1])] = None,
        year_to: Annotated[int | None, Query(ge=QUERY_INTS["year_to"][0], le=QUERY_INTS["year_to"][1])] = None,
        explain: Annotated[bool, Query(description="add each item's explanation (models that explain)")] = False,
    ) -> Any:
        """Top-k unseen items for a user (a popular fallback for users the model cannot score),
        re-ranked by the user's stored preferences (PUT /users/{user}/preferences)."""
        state = await service.current()
        out = await service.serve_user(user, k, state, exclude_seen=exclude_seen, exclude=_split(exclude),
                                       genres=_split(genres), year_from=year_from, year_to=year_to)
        body = out.to_dict()
        if explain and out.fallback is None:
            version = out.extra.get("model_version")  # an experiment's variant may serve another version
            used = state if version == state.version else service.variant_states.get(version, state)
            for row in body["items"]:
                row["explanation"] = _explained(used, user, row["item"])
        return _json(body)

    hot.documented = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.path == hot.path)

    @app.get("/users/{user}/recommendations/{item}/explanation", response_model=S.ExplanationOut,
             responses={404: {"model": S.Detail}})
    async def explanation(user: ID, item: ID, top: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> Any:
        """Why the model scores `item` as it does for `user`: the parts (biases, rated items) that
        sum to the score the ranking used (largest first), and the rated items it is "because" of."""
        state = await service.current()
        return _json(state.explain(user, item, top))

    @app.post("/recommendations", response_model=S.BatchOut)
    async def batch_recommendations(body: S.BatchIn) -> Any:
        """Top-k for many users in one call."""
        state = await service.current()
        results = [(await service.serve_user(u, body.k, state, exclude_seen=body.exclude_seen)).to_dict()
                   for u in body.users]
        return _json({"model_version": state.version, "results": results})

    @app.get("/items/{item}/similar", response_model=S.ItemListOut)
    async def similar(item: ID, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> Any:
        """Items similar to an item (a popular fallback for items the model does not know)."""
        state = await service.current()
        return _json(state.similar(item, k).to_dict())

    @app.get("/items/{item}", response_model=S.ItemOut, responses={404: {"model": S.Detail}})
    async def get_item(item: ID) -> Any:
        """An item's metadata (from the model's data, updated by PUT /items)."""
        state = await service.current()
        i = state.rec.item_index.get(item)
        if i is None and item not in state.item_meta:
            raise HTTPException(404, f"unknown item id {item!r}")
        row = state.rec.item_row(i) if i is not None else {"item": item, "label": item}
        row.update(state.item_meta.get(item, {}))
        return _json({**row, "in_model": i is not None})

    # ---- writes --------------------------------------------------------------------------
    @app.post("/users/{user}/events", status_code=201, response_model=S.EventsOut,
              responses={401: {"model": S.Detail}, 413: {"model": S.Detail}}, dependencies=[Depends(event_writer)])
    async def post_events(user: ID, body: S.EventBatch) -> Any:
        """Store a batch of events durably (a repeated event_id is stored once), then learn from them."""
        events = [e.model_dump() for e in body.events]
        stored, duplicates = await service.commits.add(user, events)  # type: ignore[union-attr]
        metrics.events_stored.inc(stored)
        state = await service.current()
        return _json({"user": user, "stored": stored, "duplicates": duplicates,
                      "applied_seq": state.applied_seq, "model_version": state.version}, 201)

    @app.post("/users", status_code=201, response_model=S.NewUserOut,
              responses={401: {"model": S.Detail}}, dependencies=[Depends(writer)])
    async def new_user(body: S.NewUserIn) -> Any:
        """A new user with a few ratings → stored, folded in, recommendations at once."""
        user = body.user or f"u-{uuid.uuid4().hex[:12]}"
        events = [{"event_id": f"signup-{n}", "item": r.item, "type": "rating", "value": r.value,
                   "timestamp": int(time.time())} for n, r in enumerate(body.ratings)]
        stored, _ = await run_in_threadpool(service.store.add_events, user, events)  # type: ignore[union-attr]
        metrics.events_stored.inc(stored)
        out = await service.serve_user(user, body.k)
        return _json({"user": user, "stored": stored, "recommendations": out.to_dict()}, 201)

    @app.get("/users/{user}/preferences", response_model=S.PreferencesOut)
    async def get_preferences(user: ID) -> Any:
        """A user's re-ranking preferences (the defaults when none are stored) and the known genres."""
        state = await service.current()
        found = await run_in_threadpool(service.store.preferences, [user])  # type: ignore[union-attr]
        return _json(_prefs_out(state, user, found.get(user)))

    @app.put("/users/{user}/preferences", response_model=S.PreferencesOut,
             responses={401: {"model": S.Detail}}, dependencies=[Depends(event_writer)])
    async def put_preferences(user: ID, body: S.PreferencesIn) -> Any:
        """Replace a user's preferences: genres never shown, diversity λ and novelty ν in [0, 1];
        every list served to the user follows them from the next request, in every worker."""
        state = await service.current()
        try:
            data = prefs.validate(body.model_dump(), state.genre_names, has_ability(state.rec.model, "item_embeddings"))
        except prefs.PreferenceError as exc:
            raise HTTPException(422, [{"loc": ["body", *exc.field], "msg": str(exc), "type": "value_error"}]) from None
        await run_in_threadpool(service.store.put_preferences, user, data)  # type: ignore[union-attr]
        state = await service.current()
        return _json(_prefs_out(state, user, data))

    @app.delete("/users/{user}", response_model=S.DeletedOut, responses={401: {"model": S.Detail}},
                dependencies=[Depends(writer)])
    async def delete_user(user: ID) -> Any:
        """Remove a user's stored events and online state; says how many events were removed."""
        removed = await run_in_threadpool(service.store.delete_user, user)  # type: ignore[union-attr]
        await service.current()
        return _json({"user": user, "removed_events": removed})

    @app.put("/items/{item}", response_model=S.ItemPutOut,
             responses={201: {"model": S.ItemPutOut}, 401: {"model": S.Detail}},
             dependencies=[Depends(writer)])
    async def put_item(item: ID, body: S.ItemIn) -> Any:
        """Add or update an item (title, genres, year, feature columns); new items are served by the
        popular fallback until a model trained with them is activated."""
        data = body.model_dump(exclude_none=True)
        new = await run_in_threadpool(service.store.put_item, item, data)  # type: ignore[union-attr]
        state = await service.current()
        return _json({"item": item, "created": new, "in_model": item in state.rec.item_index},
                     201 if new else 200)

    # ---- admin ---------------------------------------------------------------------------
    def registry() -> Registry:
        if service.registry is None:
            raise HTTPException(409, "this service serves a model folder, not a registry: "
                                     "start it on a registry (`recstack registry add`) to manage versions")
        return service.registry

    admin = {"dependencies": [Depends(writer)], "responses": {401: {"model": S.Detail}, 409: {"model": S.Detail}}}

    @app.get("/admin/models", response_model=S.VersionsOut, **admin)
    async def list_models() -> Any:
        """Every registered version with its metadata; which one is active."""
        reg = registry()
        return _json({"active": reg.active(), "versions": reg.list()})

    @app.post("/admin/models", status_code=201, response_model=S.VersionOut, **admin)
    async def add_model(body: S.AddModelIn) -> Any:
        """Register a saved model folder (copied in) as a new version."""
        reg = registry()
        number = await run_in_threadpool(reg.add, body.path)
        return _json({"version": number}, 201)

    @app.post("/admin/models/{version}/activate", response_model=S.ActivateOut, **admin)
    async def activate(version: Annotated[int, PathParam(ge=1, le=1_000_000_000)],
                       body: Annotated[S.ActivateIn | None, Body()] = None) -> Any:
        """Atomic hot swap: in-flight requests finish on the old version; answers once this worker
        serves the new one (other workers swap at their next request)."""
        reg = registry()
        out = await run_in_threadpool(reg.activate, version, bool(body and body.force))
        await service.swap()
        return _json(out)

    @app.post("/admin/rollback", response_model=S.ActivateOut, **admin)
    async def rollback() -> Any:
        """Re-activate the version that was active before the current one."""
        reg = registry()
        out = await run_in_threadpool(reg.rollback)
        await service.swap()
        return _json(out)

    add_experiment_routes(app, service, admin)

    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(Measure, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory (`recstack.serve.app:app_from_env`): settings from RECSTACK_SERVE_SETTINGS."""
    return create_app(Settings.from_env())
