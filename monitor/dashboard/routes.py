"""The dashboard's web routes on the worker's Faust web server, and its background feed.

``GET /`` the page, ``GET /static/{name}`` its script, style sheet and icon (package data, no
external asset anywhere), ``GET /api/dashboard`` the whole system's open episodes, counts and
recent alerts, ``GET /api/episodes/{dedup_key}/trend`` one episode's analyte history, answered
by the worker that owns the patient (Faust's router forwards the request there),
``GET /api/watchlist`` the nadir watch list and ``GET /api/watchlist/{watch_id}/trend`` a watched
patient's ANC, platelets and hemoglobin (forwarded to the owner the same way). ``?ward=`` limits
the dashboard and the watch list to one ward; one no ward can have (too long, repeated, control
characters) is answered 400 with a JSON ``error``, never with every ward's patients.

Patient ids are masked in every response unless the request carries
``Authorization: Bearer <MONITOR_API_TOKEN>``: shown as ``ref:<hex>`` (the paging bridge's
``patient_ref``) when ``MONITOR_PSEUDONYM_KEY`` is set, else as bullets only.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.stored_state import load_state
from monitor.clinical.watch import WATCHED
from monitor.dashboard.feed import AlertFeed
from monitor.dashboard.trend import analytes_trend, episode_trend
from monitor.dashboard.view import DashboardView, mask_patient_id
from monitor.dashboard.watchlist import WatchList
from monitor.settings import MonitorSettings

# Every file the page needs, with its content type; anything else under /static is a 404.
STATIC_TYPES = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}

# Only this origin's own files; no inline script or style, no framing, no form posts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def security_headers() -> dict[str, str]:
    """Headers of every dashboard response (a fresh dict: the web layer may keep it)."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def load_static() -> dict[str, bytes]:
    """The page's files from the package (read at start, so a packaging fault shows at once)."""
    folder = files("monitor.dashboard").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC_TYPES}


def reveals_patient_ids(settings: MonitorSettings, authorization: str) -> bool:
    """True when the request carries the API token (constant-time, like the patient API)."""
    token = settings.api_token
    if token is None:
        return False
    expected = f"Bearer {token.get_secret_value()}"
    return hmac.compare_digest(authorization.encode(), expected.encode())


def pseudonymizer(settings: MonitorSettings) -> Pseudonymizer | None:
    """The bridge's ``Pseudonymizer`` for the key of the same setting the bridge reads, so a
    ``ref:`` here equals a page's ``patient_ref``."""
    key = settings.pseudonym_key
    return Pseudonymizer(key.get_secret_value().encode()) if key is not None else None


MAX_WARD_CHARS = 64  # as a result's ``context.ward`` (monitor.clinical.model.ResultContext)


class InvalidWardError(ValueError):
    """A ``?ward=`` no ward can have; the message names the rule, never the value."""


def ward_of(request: Request) -> str | None:
    """The ``?ward=`` of a request, trimmed; None (all wards) when absent or blank.

    Raises InvalidWardError when the parameter is given more than once, is longer than
    MAX_WARD_CHARS or holds a control character: a bookmarked ward must never fall back to
    every ward's patients, so such a request is answered 400, not with the whole hospital.
    """
    values = request.rel_url.query.getall("ward", [])
    if len(values) > 1:
        raise InvalidWardError("ward: give at most one ward parameter")
    ward = values[0].strip() if values else ""
    if len(ward) > MAX_WARD_CHARS:
        raise InvalidWardError(f"ward: at most {MAX_WARD_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in ward):
        raise InvalidWardError("ward: no control characters")
    return ward or None


def bad_ward(web: View, error: InvalidWardError) -> Response:
    return web.json({"error": f"invalid {error}"}, status=400, headers=security_headers())


def install_dashboard(
    app: faust.App,
    settings: MonitorSettings,
    table: faust.types.TableT[bytes, bytes | None],
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
) -> tuple[DashboardView, WatchList]:
    """Register the dashboard's routes and its feed task on the worker's Faust ``app``; the
    view of the alerts and the watch list that task keeps up to date.

    ``table`` is the worker's patient table (keys are patient ids as UTF-8, values stored
    states), read for a patient's trend; ``default_lln`` the detector's default lower limits.
    """
    view = DashboardView()
    watchlist = WatchList(settings.detector.nadir_window_days, settings.watch_lead_days)
    feed = AlertFeed(settings, view, watchlist=watchlist)
    app.task(feed.run)
    static = load_static()
    pseudonym = pseudonymizer(settings)

    def reveal(request: Request) -> bool:
        return reveals_patient_ids(settings, request.headers.get("Authorization", ""))

    def static_response(web: View, name: str) -> Response:
        return web.bytes(static[name], content_type=STATIC_TYPES[name], headers=security_headers())

    def trend_here(web: View, request: Request, dedup_key: str) -> Response:
        """Answer from this worker's table: it owns the patient's partition."""
        located = view.locate(dedup_key)
        stored = table.get(located[0].encode()) if located is not None else None
        if located is None or stored is None:
            return not_found(web, "episode not known here yet")
        patient_id, condition = located
        revealed = reveal(request)
        series = episode_trend(
            load_state(stored),
            condition,
            settings.ctcae_version,
            default_lln,
        )
        body: dict[str, Any] = {
            "dedup_key": dedup_key,
            "patient": patient_id if revealed else mask_patient_id(patient_id, pseudonym),
            "masked": not revealed,
            "condition": condition,
            "open": dedup_key in view.episodes,
            "ctcae_version": settings.ctcae_version,
            "series": series,
        }
        return web.json(body, headers=security_headers())

    @app.page("/")
    async def index(web: View, request: Request) -> Response:
        return static_response(web, "index.html")

    @app.page("/static/{name}")
    class StaticFile(View):
        async def get(self, request: Request, **params: Any) -> Response:
            name = request.match_info["name"]
            if name not in STATIC_TYPES or name == "index.html":
                return not_found(self, "no such file")
            return static_response(self, name)

    def watch_trend_here(web: View, request: Request, watch_id: str) -> Response:
        """A watched patient's counts, from this worker's table (it owns the patient)."""
        patient_id = watchlist.locate(watch_id)
        stored = table.get(patient_id.encode()) if patient_id is not None else None
        if patient_id is None or stored is None:
            return not_found(web, "patient not known here yet")
        revealed = reveal(request)
        body: dict[str, Any] = {
            "watch_id": watch_id,
            "patient": patient_id if revealed else mask_patient_id(patient_id, pseudonym),
            "masked": not revealed,
            "ctcae_version": settings.ctcae_version,
            "series": analytes_trend(
                load_state(stored), WATCHED, settings.ctcae_version, default_lln
            ),
        }
        return web.json(body, headers=security_headers())

    async def at_owner(
        web: View, request: Request, patient_id: str, here: Callable[[], Response]
    ) -> Response:
        try:
            # The same request, headers included, goes to the owner, which resolves again.
            response: Response = await app.router.route_req(
                table.name, patient_id, web.web, request
            )
        except SameNode:
            return here()
        except ServiceUnavailable:  # no owner known yet (a rebalance): Faust's 503, our headers
            return web.json(
                {"error": "owner of the patient unknown, try again"},
                status=503,
                headers=security_headers(),
            )
        # The router rebuilds the owner's answer from its body and status only.
        response.headers.update(security_headers())
        return response

    @app.page("/api/dashboard")
    async def dashboard(web: View, request: Request) -> Response:
        try:
            ward = ward_of(request)
        except InvalidWardError as error:
            return bad_ward(web, error)
        body = view.snapshot(
            datetime.now(UTC),
            reveal=reveal(request),
            pseudonym=pseudonym,
            ward=ward,
            wards=watchlist.wards(),
        )
        return web.json(body, headers=security_headers())

    @app.page("/api/watchlist")
    async def watch(web: View, request: Request) -> Response:
        try:
            ward = ward_of(request)
        except InvalidWardError as error:
            return bad_ward(web, error)
        body = watchlist.snapshot(
            datetime.now(UTC), ward, reveal=reveal(request), pseudonym=pseudonym
        )
        return web.json(body, headers=security_headers())

    @app.page("/api/episodes/{dedup_key}/trend")
    class Trend(View):
        async def get(self, request: Request, **params: Any) -> Response:
            dedup_key = request.match_info["dedup_key"]
            located = view.locate(dedup_key)
            if located is None:
                return not_found(self, "unknown episode")
            return await at_owner(
                self, request, located[0], lambda: trend_here(self, request, dedup_key)
            )

    @app.page("/api/watchlist/{watch_id}/trend")
    class WatchTrend(View):
        async def get(self, request: Request, **params: Any) -> Response:
            watch_id = request.match_info["watch_id"]
            patient_id = watchlist.locate(watch_id)
            if patient_id is None:
                return not_found(self, "unknown patient")
            return await at_owner(
                self, request, patient_id, lambda: watch_trend_here(self, request, watch_id)
            )

    return view, watchlist


def not_found(web: View, reason: str) -> Response:
    return web.json({"error": reason}, status=404, headers=security_headers())
