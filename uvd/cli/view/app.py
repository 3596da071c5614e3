"""The `uvd view` web app (Starlette): pages rendered with Jinja2, the same numbers as JSON under /api.

Read-only: only GET (and HEAD) routes exist. Nothing is served by file path except the app's own
static folder (Starlette's StaticFiles refuses `..` and symlinks leading out); build data is reached
by dataset name, sentence id and unit name, which are looked up in the units table.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from uvd.cli.view.data import BuildView, NotFound, Refused
from uvd.image import sniff

logger = logging.getLogger(__name__)
HERE = Path(__file__).parent
IMAGE_CACHE = "public, max-age=86400, immutable"  # an image is fixed by its sentence id and index


def image_type(data: bytes) -> str:
    """The Content-Type of a stored image, from its bytes (uvd.image.sniff, as the codec reads them)."""
    return {"jpeg": "image/jpeg", "png": "image/png"}.get(sniff(data) or "", "application/octet-stream")


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise NotFound(f"not a number: {value!r}") from None


@functools.lru_cache(maxsize=1)
def templates() -> Environment:
    """The pages' templates, compiled once per process (not on the first request of each page)."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
    for name in env.list_templates():
        env.get_template(name)
    return env


def create_app(out: str, tokenizer: str | None = None, per_page: int | None = None,
               check_outside_plan: bool = True) -> Starlette:
    """The app over the build at `out` (reads its manifest and units table now; nothing else)."""
    build = BuildView(out, **({"per_page": per_page} if per_page else {}))
    tokens = None
    if tokenizer:
        from uvd.cli.view.tokens import TokenView

        tokens = TokenView(build, tokenizer)
    env = templates()
    shared = {"has_tokens": tokens is not None, "out": build.out}

    def html(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**shared, **ctx), status_code=status)

    def page(template: str, make: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return html(template, data=make(request), request=request)
        return endpoint

    def api(make: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return JSONResponse(make(request))
        return endpoint

    def home(request: Request) -> dict[str, Any]:
        return build.home()

    def dataset(request: Request) -> dict[str, Any]:
        q = request.query_params
        return build.dataset_page(request.path_params["name"], q.get("task"), q.get("layout"), _int(q.get("page")))

    def sentence(request: Request) -> dict[str, Any]:
        return build.sentence(request.path_params["sentence_id"], request.query_params.get("at"))

    def failures(request: Request) -> dict[str, Any]:
        q = request.query_params
        return build.failures(q.get("dataset") or None, q.get("reason") or None, _int(q.get("page")))

    def token_page(request: Request) -> dict[str, Any]:
        if tokens is None:
            raise NotFound("no tokenizer: start `uvd view OUT --tokenizer DIR` to see decoded tokens")
        return tokens.page(request.path_params["sentence_id"], request.query_params.get("at"))

    def image(request: Request) -> Response:
        data = build.image(request.path_params["sentence_id"], _int(request.path_params["index"]),
                           request.query_params.get("at"))
        return Response(data, media_type=image_type(data), headers={"Cache-Control": IMAGE_CACHE})

    def decoded(request: Request) -> Response:
        if tokens is None:
            raise NotFound("no tokenizer")
        data = tokens.decoded_image(request.path_params["sentence_id"], _int(request.path_params["index"]),
                                    request.query_params.get("at"))
        return Response(data, media_type="image/png", headers={"Cache-Control": IMAGE_CACHE})

    routes = [
        Route("/", page("home.html", home)),
        Route("/dataset/{name}", page("dataset.html", dataset)),
        Route("/sentence/{sentence_id}", page("sentence.html", sentence)),
        Route("/failures", page("failures.html", failures)),
        Route("/tokens/{sentence_id}", page("tokens.html", token_page)),
        Route("/image/{sentence_id}/{index}", image),
        Route("/tokens/{sentence_id}/image/{index}", decoded),
        Route("/api/build", api(home)),
        Route("/api/dataset/{name}", api(dataset)),
        Route("/api/sentence/{sentence_id}", api(sentence)),
        Route("/api/failures", api(failures)),
        Route("/api/tokens/{sentence_id}", api(token_page)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    def error(status: int, message: str, request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return html("error.html", status=status, status_code=status, message=message, request=request)

    def not_found(request: Request, exc: Exception) -> Response:
        return error(404, str(exc), request)

    def refused(request: Request, exc: Exception) -> Response:
        return error(403, str(exc), request)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such page", 405: "this viewer is read-only"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, request)

    def crashed(request: Request, exc: Exception) -> Response:
        # A page that cannot be made says why in one line; the traceback goes to the log, not the browser.
        logger.error("uvd view: %s failed", request.url.path, exc_info=exc)
        return error(500, f"could not make this page: {type(exc).__name__}: {str(exc)[:300]}", request)

    app = Starlette(routes=routes, exception_handlers={
        NotFound: not_found, Refused: refused, HTTPException: http_error, Exception: crashed})
    app.state.build = build
    if check_outside_plan:
        import threading

        def check() -> None:
            try:
                build.check_outside_plan()
            except Exception as err:  # a listing that fails leaves the check "not done", shown as such
                logger.warning("uvd view: could not list the output for units outside the plan: %s", err)

        threading.Thread(target=check, name="uvd-view-outside-plan", daemon=True).start()
    return app
