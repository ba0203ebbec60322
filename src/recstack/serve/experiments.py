"""A/B routes: the admin API (create, start, stop, force) and the reports (JSON and the lift plot).

The logic lives in `recstack.ab`; these routes parse, call it in the thread pool and answer.
`{experiment}` is an experiment's id or its name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from recstack.ab import experiments as E
from recstack.ab.report import build_report
from recstack.serve import schemas as S

ID = Annotated[str, PathParam(min_length=1, max_length=S.MAX_ID, pattern=S.ID_PATTERN)]


def add_experiment_routes(app: FastAPI, service: Any, admin: dict[str, Any]) -> None:
    """Register the experiment routes on `app` (`admin`: the Bearer-key dependency and responses)."""
    admin_one = {**admin, "responses": {**admin["responses"], 404: {"model": S.Detail}}}  # one experiment by id
    from recstack.serve.app import _json

    def store() -> Any:
        return service.store

    def changed() -> None:
        if service.experiments is not None:
            service.experiments.refresh()  # this worker follows at once; others within a second

    @app.get("/experiments", response_model=S.ExperimentsOut)
    async def list_experiments() -> Any:
        """Every experiment, newest first: id, name, status, metric, variants, planned users, times."""
        rows = await run_in_threadpool(E.list_all, store())
        return _json({"experiments": [E.summary(e) for e in rows]})

    @app.get("/experiments/{experiment}", response_model=S.ExperimentOut, responses={404: {"model": S.Detail}})
    async def get_experiment(experiment: ID) -> Any:
        """One experiment's definition, with its forced (QA) users."""
        exp = await run_in_threadpool(E.get, store(), experiment)
        return _json({**E.summary(exp), "forced": dict(exp.forced)})

    @app.get("/experiments/{experiment}/report", response_model=S.ReportOut, responses={404: {"model": S.Detail}})
    async def report(experiment: ID) -> Any:
        """Per-variant users, exposures and outcome mean with 95% CI; lift with CI, the test, a
        bootstrap CI; the SRM check; the verdict (none before the planned sample size); the timeline."""
        if service.experiments is not None:
            await run_in_threadpool(service.experiments.exposures.flush)
        return _json(await run_in_threadpool(build_report, store(), experiment))

    @app.get("/experiments/{experiment}/lift.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}}, 404: {"model": S.Detail}})
    async def lift_plot(experiment: ID) -> Response:
        """The cumulative relative lift over time with its 95% CI (PNG)."""
        from recstack.ab.plot import lift_png

        if service.experiments is not None:
            await run_in_threadpool(service.experiments.exposures.flush)
        out = await run_in_threadpool(build_report, store(), experiment, True, False)
        return Response(await run_in_threadpool(lift_png, out), media_type="image/png")

    @app.post("/admin/experiments", status_code=201, response_model=S.ExperimentOut, **admin)
    async def create(body: S.ExperimentIn) -> Any:
        """Create an experiment (status draft). Variants: name, share, model_version and/or rerank."""
        spec = body.model_dump(exclude_none=True)
        exp = await run_in_threadpool(E.create, store(), spec)
        return _json(E.summary(exp), 201)

    @app.post("/admin/experiments/{experiment}/start", response_model=S.ExperimentOut, **admin_one)
    async def start(experiment: ID) -> Any:
        """draft → running; refused while another experiment runs or for a version the registry lacks."""
        versions = None if service.registry is None else [v.number for v in service.registry.versions()]
        exp = await run_in_threadpool(E.start, store(), experiment, versions)
        changed()
        return _json(E.summary(exp))

    @app.post("/admin/experiments/{experiment}/stop", response_model=S.ExperimentOut, **admin_one)
    async def stop(experiment: ID) -> Any:
        """running → stopped: serving returns to the active model; the data stays for the report."""
        exp = await run_in_threadpool(E.stop, store(), experiment)
        changed()
        if service.experiments is not None:
            await run_in_threadpool(service.experiments.exposures.flush)
        return _json(E.summary(exp))

    @app.post("/admin/experiments/{experiment}/force", response_model=S.ExperimentOut, **admin_one)
    async def force(experiment: ID, body: S.ForceIn) -> Any:
        """Force a user into a variant for QA (variant null: remove); forced users are not analysed."""
        exp = await run_in_threadpool(E.force, store(), experiment, body.user, body.variant)
        changed()
        return _json({**E.summary(exp), "forced": dict(exp.forced)})
