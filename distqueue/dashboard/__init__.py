"""The web dashboard: ``distqueue dashboard --url ...``, or mounted in an ASGI application.

Built on Starlette and Jinja2 (``pip install distqueue[ops]``): a small, well-kept ASGI
toolkit that mounts under any path of a user's own Starlette, FastAPI or other ASGI app, and
server-rendered pages that work without JavaScript (the script only refreshes figures, sorts
and filters tables, and draws the throughput chart)::

    from distqueue.dashboard import create_app
    app.mount("/queues", create_app("redis://localhost:6379/0"))

Pages: a summary of every registered queue with live figures and a throughput chart; a page
per queue (waiting items paged and searchable, leases with their deadlines and holders, dead
letters with their errors); the live workers. JSON at ``api/queues`` and ``api/workers``.

**Read-only by default.** Requeue and purge buttons appear, and their POSTs are served, only
with ``allow_actions=True``; otherwise every POST is refused (403). Each form carries a token
of the app's own, so another site cannot post to it through a visitor's browser. The server's
URL is shown without its password. Items are decoded by the safe serializer only.
"""

from __future__ import annotations

import collections
import hmac
import json
import math
import secrets
import threading
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..cli.output import age
from ..errors import DistQueueError
from ..inspection import Inspector, QueueFigures, show
from ..registry import QueueEntry
from ..sampling import Sampler, count_workers

PAGE = 50
"""Items, leases and dead letters per page."""


def redact(url: str) -> str:
    """``url`` without secrets: the password (and ``sentinel_password``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a malformed URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    query = "&".join(
        f"{key}=***" if "password" in key.lower() else f"{key}={values[0]}"
        for key, values in parse_qs(parts.query, keep_blank_values=True).items()
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _age(seconds: float | None) -> str:
    return age(seconds) or "-"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _maxsize(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "unbounded"
    if isinstance(value, (int, float)) and value > 0:
        return "unbounded" if math.isinf(value) else f"{value:g}"
    return "unbounded"


class Dashboard:
    """The dashboard's state: the inspector, the sampler, the templates, the form token."""

    def __init__(self, url: str, allow_actions: bool, refresh: float) -> None:
        self.url = url
        self.shown_url = redact(url)
        self.allow_actions = allow_actions
        self.refresh = refresh
        self.token = secrets.token_urlsafe(24)
        self.inspector = Inspector(url)
        self.sampler = Sampler()
        self.lock = threading.Lock()
        # (time, put/s, get/s) of all queues together, for the throughput chart
        self.history: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=150)
        folder = resources.files(__package__).joinpath("templates")
        self.templates = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(["html"]),
        )
        self.templates.filters.update(
            age=_age, rate=_rate, when=_when, maxsize=_maxsize, quote=lambda s: quote(s, safe="")
        )

    def figures(self) -> tuple[list[QueueEntry], list[QueueFigures]]:
        with self.lock:
            entries = self.inspector.registry.queues()
            found = self.inspector.figures(entries)
            count_workers(found, self.inspector.registry)
            self.sampler.observe(found)
            self.history.append(
                (
                    round(time.time(), 3),
                    sum(f.put_rate or 0.0 for f in found),
                    sum(f.get_rate or 0.0 for f in found),
                )
            )
        return entries, found

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        template = self.templates.get_template(name)
        # links are paths under the app's own root, wherever it is mounted
        base = str(request.scope.get("root_path", "")).rstrip("/")
        html = template.render(
            base=base,
            url=self.shown_url,
            allow_actions=self.allow_actions,
            shared=self.inspector.shared,
            refresh=self.refresh,
            token=self.token,
            **context,
        )
        return HTMLResponse(html, status_code=status)


def create_app(url: str, *, allow_actions: bool = False, refresh: float = 2.0) -> Starlette:
    """The dashboard of the queues at ``url``, as an ASGI app (Starlette). Actions (requeue,
    purge) only with ``allow_actions``. ``refresh``: seconds between live updates."""
    dash = Dashboard(url, allow_actions, refresh)

    def _int(request: Request, key: str) -> int:
        try:
            return max(0, int(request.query_params.get(key, "0")))
        except ValueError:
            return 0

    def error_page(request: Request, exc: Exception, status: int = 502) -> Response:
        return dash.render(request, "error.html", status=status, message=str(exc))

    def summary(request: Request) -> Response:
        try:
            _, found = dash.figures()
        except DistQueueError as exc:
            return error_page(request, exc)
        history = json.dumps([{"put": p, "get": g} for _, p, g in dash.history])
        text = request.query_params.get("filter", "")
        matching = [f for f in found if text.lower() in f.name.lower()]
        offset = _int(request, "offset")
        return dash.render(
            request,
            "summary.html",
            queues=matching[offset : offset + PAGE],
            total=len(found),
            matching=len(matching),
            offset=offset,
            page_size=PAGE,
            filter=text,
            names=json.dumps(sorted(f.name for f in found)),
            page="summary",
            history=history,
        )

    def api_queues(request: Request) -> Response:
        try:
            _, found = dash.figures()
        except DistQueueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"queues": [f.as_dict() for f in found], "time": time.time()})

    def api_workers(request: Request) -> Response:
        try:
            workers = dash.inspector.registry.workers()
        except DistQueueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"workers": [w.as_dict() for w in workers]})

    def workers(request: Request) -> Response:
        try:
            found = dash.inspector.registry.workers()
            now = dash.inspector.server_time()
        except DistQueueError as exc:
            return error_page(request, exc)
        return dash.render(request, "workers.html", workers=found, now=now, page="workers")

    def queue_page(request: Request) -> Response:
        name = request.path_params["name"]
        offset = _int(request, "offset")
        dead_offset = _int(request, "dead_offset")
        search = request.query_params.get("search") or None
        try:
            entries, found = dash.figures()
            entry = next((e for e in entries if e.name == name), None)
            if entry is None:
                return error_page(request, ValueError(f"no queue {name!r} is registered"), 404)
            figures = next(f for f in found if f.name == name)
            context: dict[str, Any] = {
                "entry": entry,
                "figures": figures,
                "search": search or "",
                "offset": offset,
                "dead_offset": dead_offset,
                "page_size": PAGE,
                "waiting": [],
                "leases": [],
                "dead": [],
                "notice": request.query_params.get("done"),
                "page": "queue",
                "unavailable": None,
            }
            if entry.readable and figures.error is None:
                if dash.inspector.shared:
                    context["waiting"] = dash.inspector.peek(entry, offset, PAGE, search)
                    context["leases"] = dash.inspector.leases(entry, PAGE)
                    context["now"] = dash.inspector.server_time()
                else:
                    context["unavailable"] = "waiting items and leases need a Redis URL"
                letters = dash.inspector.dead_letters(entry, dead_offset + PAGE)
                context["dead"] = [
                    (letter, _letter_text(letter, entry)) for letter in letters[dead_offset:]
                ]
        except DistQueueError as exc:
            return error_page(request, exc)
        return dash.render(request, "queue.html", **context)

    async def action(request: Request) -> Response:
        if not dash.allow_actions:
            return _refusal(
                "actions are off: start the dashboard with --allow-actions "
                "(create_app(..., allow_actions=True)) to requeue or purge"
            )
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = form.get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), dash.token.encode()):
            return _refusal("this form is stale or not from this dashboard: reload the page")
        name = request.path_params["name"]
        what = request.path_params["what"]
        if what not in ("requeue", "purge"):
            return Response("no such action\n", status_code=404, media_type="text/plain")
        ids = form.get("id") or None
        from starlette.concurrency import run_in_threadpool

        def act() -> int:
            entry = dash.inspector.registry.queue(name)
            if entry is None or not entry.readable:
                raise ValueError(f"no readable queue {name!r} is registered")
            if what == "requeue":
                return dash.inspector.requeue_dead(entry, ids)
            return dash.inspector.purge_dead(entry, ids)

        try:
            done = await run_in_threadpool(act)
        except (DistQueueError, ValueError) as exc:
            return error_page(request, exc, 400)
        verb = "requeued" if what == "requeue" else "purged"
        root = str(request.scope.get("root_path", "")).rstrip("/")
        notice = urlencode({"done": f"{verb} {done} dead letter(s)"})
        return RedirectResponse(f"{root}/queue/{quote(name, safe='')}?{notice}", status_code=303)

    static = resources.files(__package__).joinpath("static")
    routes = [
        Route("/", summary, name="summary"),
        Route("/workers", workers, name="workers"),
        Route("/api/queues", api_queues, name="api_queues"),
        Route("/api/workers", api_workers, name="api_workers"),
        Route("/queue/{name:path}/dead/{what:str}", action, methods=["POST"], name="action"),
        Route("/queue/{name:path}", queue_page, name="queue"),
        Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Guard)
    app.state.dashboard = dash
    return app


_HEADERS = [
    # no page of it inside another site's frame (a click on a button there), no script or
    # style but its own, no address of it sent elsewhere
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


class _Guard:
    """Adds the dashboard's security headers to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _refusal(message: str) -> Response:
    return Response(message + "\n", status_code=403, media_type="text/plain")


def _letter_text(letter: Any, entry: QueueEntry) -> str:
    if letter.payload is not None:
        return show(letter.payload, entry.serializer)
    return repr(letter.item)


__all__ = ["create_app", "redact"]
