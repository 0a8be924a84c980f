"""The web application: routes, sign-in, and the pages' data (Starlette, Jinja2 templates).

- ``GET /``: the fleet (sortable table, reloads itself every ``refresh_s``); ``GET /api/fleet``: the
  same as JSON;
- ``GET /station/{id}``: fluxes coloured by QC, diurnal cycle, met, instrument health (SVG from
  :mod:`collector.science.plots`), the station's storage and spool, its alarms;
- ``GET /alarms``: active alarms and the history; ``POST /alarms/{id}/ack`` and
  ``POST /station/{id}/silence`` for signed-in users only (403 otherwise);
- ``GET|POST /login``, ``POST /logout``.

Sessions are signed cookies (``SameSite=strict``, ``HttpOnly``; the key is made at start, so a
restart signs everyone out). A POST must also come from this site (``Origin`` or ``Referer``), so a
page elsewhere cannot post with a signed-in user's cookie.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from collector.config import CollectorConfig
from collector.query import QueryError
from collector.web import auth, fleetdata
from fluxedge.common.logs import event

log = logging.getLogger("collector.web")
HERE = Path(__file__).parent
MET_PLOTTED = ("TA", "RH", "VPD", "PA", "SW_IN", "PPFD_IN", "NETRAD", "P")


def _utc(t_s: float | None) -> str:
    return "-" if t_s is None else datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(t_s: float | None, now: float) -> str:
    if t_s is None:
        return "never"
    s = max(0.0, now - t_s)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago" \
        if s < 172800 else f"{s / 86400:.0f} days ago"


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def create_app(config: CollectorConfig) -> Starlette:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(utc=_utc, ago=_ago, num=_num)
    web = config.web
    users = {u.name: u.password_hash for u in web.user}

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        user = request.session.get("user")
        html = env.get_template(name).render(request=request, user=user, refresh_s=web.refresh_s,
                                             can_sign_in=bool(users), now=time.time(), **context)
        return HTMLResponse(html, status_code=status)

    def problem(request: Request, exc: Exception) -> HTMLResponse:
        return page(request, "problem.html", 503, message=str(exc))

    async def fleet_page(request: Request) -> Response:
        try:
            rows = fleetdata.fleet(config.influxdb, web.offline_after_s)
        except QueryError as exc:
            return problem(request, exc)
        return page(request, "fleet.html", rows=rows)

    async def fleet_api(request: Request) -> Response:
        try:
            rows = fleetdata.fleet(config.influxdb, web.offline_after_s)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"time_s": time.time(), "stations": [vars(r) for r in rows]})

    async def station_page(request: Request) -> Response:
        station = request.path_params["station"]
        try:
            rows = [r for r in fleetdata.fleet(config.influxdb, web.offline_after_s) if r.station == station]
            if not rows:
                return page(request, "problem.html", 404, message=f"no station {station!r} in the database")
            plots, notes = _station_plots(config, station, web.station_days)
            alarms = fleetdata.alarms(config.influxdb, station, days=web.station_days)
        except QueryError as exc:
            return problem(request, exc)
        return page(request, "station.html", row=rows[0], plots=plots, notes=notes, alarms=alarms[::-1][:50],
                    days=web.station_days)

    async def alarms_page(request: Request) -> Response:
        try:
            active = fleetdata.active_alarms(config.influxdb)
            history = fleetdata.alarms(config.influxdb, days=30)[::-1][:500]
        except QueryError as exc:
            return problem(request, exc)
        return page(request, "alarms.html", active=active, history=history, message=request.query_params.get("m"))

    def _refused(request: Request) -> Response | None:
        """Why a write is refused (not signed in, or posted from another site), or None."""
        if not request.session.get("user"):
            return page(request, "problem.html", 403, message="sign in to acknowledge alarms or silence stations")
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or urlsplit(origin).netloc != request.url.netloc:
            return page(request, "problem.html", 403, message="this form must be sent from this site")
        return None

    async def ack(request: Request) -> Response:
        if (refused := _refused(request)) is not None:
            return refused
        from collector.alarms.commands import ack_alarm

        ok, message = await _in_thread(ack_alarm, config, request.path_params["alarm"], request.session["user"])
        event(log, "web_ack", user=request.session["user"], alarm=request.path_params["alarm"], ok=ok)
        return RedirectResponse(f"/alarms?m={_clean(message)}", status_code=303)

    async def silence(request: Request) -> Response:
        if (refused := _refused(request)) is not None:
            return refused
        from collector.alarms.commands import silence_station

        form = await request.form()
        try:
            hours = float(form.get("hours", "2"))
        except ValueError:
            hours = -1.0
        if not 0 <= hours <= 24 * 30:
            return page(request, "problem.html", 400, message="hours must be a number from 0 to 720")
        station = request.path_params["station"]
        ok, message = await _in_thread(silence_station, config, station, hours * 3600, request.session["user"],
                                       str(form.get("reason", ""))[:200])
        event(log, "web_silence", user=request.session["user"], station=station, hours=hours, ok=ok)
        return RedirectResponse(f"/alarms?m={_clean(message)}", status_code=303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page(request, "login.html")
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        stored = users.get(name)
        if stored is None or not auth.verify(password, stored):
            event(log, "web_login_refused", logging.WARNING, user=name[:64])
            return page(request, "login.html", 401, error="unknown user or wrong password")
        request.session["user"] = name
        event(log, "web_login", user=name)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    routes = [
        Route("/", fleet_page), Route("/api/fleet", fleet_api), Route("/station/{station}", station_page),
        Route("/alarms", alarms_page), Route("/alarms/{alarm}/ack", ack, methods=["POST"]),
        Route("/station/{station}/silence", silence, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), same_site="strict",
                             https_only=False, max_age=12 * 3600)]
    return Starlette(routes=routes, middleware=middleware)


def _clean(message: str) -> str:
    from urllib.parse import quote

    return quote(message.removeprefix("fluxedge: error: ")[:300])


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    try:
        return await run_in_threadpool(fn, *args)
    except SystemExit as exc:  # the broker unreachable: commands say so by exiting
        return False, str(exc)


def _station_plots(config: CollectorConfig, station: str, days: float) -> tuple[dict[str, str], list[str]]:
    """SVG text of each plot of the station's last ``days``, and why the others are missing."""
    from collector.science import frame, plots

    site_cfg = config.site_of(station)
    site = frame.SiteTime.of(site_cfg.time_zone if site_cfg else "UTC")
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    periods = frame.load(config.influxdb, station, start, end, site=site, site_id=site_cfg.id if site_cfg else None)
    diag = frame.load_diag(config.influxdb, station, start, end, site)
    out, notes = {}, []
    met = [c for c in MET_PLOTTED if c in periods and periods[c].notna().any()]
    wanted = {"fluxes": lambda: plots.timeseries(periods), "diurnal cycle": lambda: plots.diurnal(periods),
              "met": lambda: plots.timeseries(periods, met) if met else _none("no met sensor reported"),
              "instrument health": lambda: plots.health(diag, periods)}
    for title, draw in wanted.items():
        try:
            fig = draw()
        except ValueError as exc:
            notes.append(f"{title}: {exc}")
            continue
        out[title] = _svg(fig)
    return out, notes


def _none(why: str):
    raise ValueError(why)


def _svg(fig) -> str:
    import io

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]
