"""The viewer's web app: server-rendered pages (Jinja2) over the runs' stores, read-only, and JSON for the curves
(uPlot draws them in the page; a few lines of JS poll for new steps).

Every route only reads: the stores are opened read-only and no route takes a POST. Handlers are plain functions,
which Starlette runs in its thread pool, since the store reads are blocking SQLite calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ajet.core.store import UnknownEpisode
from ajet.viewer import curves
from ajet.viewer.episode_view import build_episode_view
from ajet.viewer.evaluations import evaluations
from ajet.viewer.filters import PHASES, STATUSES, BadFilter, parse_filter
from ajet.viewer.runs import RunDir
from ajet.viewer.state import Viewer, run_record, summary
from ajet.viewer.tokens import LOGPROB_BUCKETS, Decoder, Tokenizers

HERE = Path(__file__).parent
#: how often the pages ask for new steps (seconds)
POLL_S = 5.0


def create_app(
    run_dirs: list[Path], *, tokenizers: Tokenizers | None = None, poll_s: float = POLL_S
) -> Starlette:
    """The viewer of the runs in or below `run_dirs` (each one run, or a folder of runs)."""
    viewer = Viewer(run_dirs, tokenizers)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(poll_ms=int(poll_s * 1000), fmt=_fmt, when=_when)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"code": status, **context}, status_code=status)

    def find_run(key: str) -> RunDir:
        run = viewer.runs().get(key)
        if run is None:
            raise HTTPException(404, f"no run {key!r} under {', '.join(str(r) for r in viewer.roots)}")
        return run

    def runs_page(request: Request) -> Response:
        runs = [summary(viewer, run) for run in viewer.runs().values()]
        return page(request, "runs.html", runs=runs, roots=viewer.roots)

    def run_page(request: Request) -> Response:
        run = find_run(request.path_params["key"])
        info = summary(viewer, run)
        store = viewer.store(run).store
        evals = evaluations(store, info["run_id"]) if store is not None and "eval" in info["episodes"] else []
        return page(request, "run.html", run=run, info=info, evaluations=evals)

    def compare_page(request: Request) -> Response:
        keys = request.query_params.getlist("run")
        runs = viewer.runs()
        unknown = [key for key in keys if key not in runs]
        if unknown:
            raise HTTPException(404, f"no run {', '.join(map(repr, unknown))}; known: {', '.join(runs)}")
        return page(request, "compare.html", keys=keys or list(runs), runs=runs)

    def episodes_page(request: Request) -> Response:
        run = find_run(request.path_params["key"])
        opened = viewer.store(run)
        record = run_record(opened.store, run)
        run_id = record.run_id if record else run.run_id
        try:
            selected = parse_filter(dict(request.query_params), run_id)
        except BadFilter as exc:
            return page(request, "error.html", status=400, message=str(exc), run=run)
        episodes, total = [], 0
        if opened.store is not None:
            episodes = opened.store.episodes_page(selected.query)
            total = opened.store.count_episodes(selected.query)
        return page(
            request,
            "episodes.html",
            run=run,
            note=opened.note,
            episodes=episodes,
            total=total,
            selected=selected,
            phases=PHASES,
            statuses=STATUSES,
            roles=_roles(run),
        )

    def episode_page(request: Request) -> Response:
        run = find_run(request.path_params["key"])
        episode_id = request.path_params["episode_id"]
        opened = viewer.store(run)
        if opened.store is None:
            raise HTTPException(404, f"run {run.key} has no recorded episodes: {opened.note}")
        store = opened.store
        try:
            episode = store.get_episode(episode_id)
        except UnknownEpisode:
            raise HTTPException(404, f"no episode {episode_id!r} in run {run.key}") from None
        record = run_record(store, run)
        run_id = record.run_id if record else run.run_id
        if run_id is not None and episode.run_id != run_id:
            raise HTTPException(404, f"episode {episode_id!r} belongs to another run ({episode.run_id})")
        calls, samples, mismatches = (
            store.calls(episode_id),
            store.samples(episode_id),
            store.mismatches(episode_id),
        )
        # the tokenizer loads (once per model) only for an episode with tokens to show
        needs_tokens = bool(samples) or any(c.completion_ids for c in calls)
        decoder = viewer.decoder(run) if needs_tokens else Decoder()
        views, sample_views, unplaced = build_episode_view(calls, samples, mismatches, decoder)
        return page(
            request,
            "episode.html",
            run=run,
            episode=episode,
            calls=views,
            samples=sample_views,
            unplaced=unplaced,
            mismatch_count=len(mismatches),
            token_note=decoder.note,
            buckets=LOGPROB_BUCKETS,
        )

    def api_runs(request: Request) -> Response:
        return JSONResponse({"runs": [summary(viewer, run) for run in viewer.runs().values()]})

    def api_curves(request: Request) -> Response:
        runs = viewer.runs()
        keys = request.query_params.getlist("run") or list(runs)
        unknown = [key for key in keys if key not in runs]
        if unknown:
            return JSONResponse({"error": f"no run {', '.join(map(repr, unknown))}"}, status_code=404)
        data = [(key, runs[key].name, viewer.metrics(runs[key])) for key in keys]
        return JSONResponse(curves.curves_json(data, request.query_params.getlist("metric")))

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return page(request, "error.html", status=exc.status_code, message=exc.detail, run=None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        viewer.close()

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/compare", compare_page),
            Route("/runs/{key}", run_page),
            Route("/runs/{key}/episodes", episodes_page),
            Route("/runs/{key}/episodes/{episode_id}", episode_page),
            Route("/api/runs", api_runs),
            Route("/api/curves", api_curves),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    app.state.viewer = viewer
    return app


def _roles(run: RunDir) -> list[str]:
    # the tags a run trains, for the role filter's suggestions (any tag can still be typed)
    targets = run.config.get("trainable_targets")
    return [str(t) for t in targets] if isinstance(targets, list) else []


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
