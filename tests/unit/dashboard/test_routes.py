"""The dashboard's HTTP surface in-process: page, static files, API, masking, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from faust.exceptions import SameNode
from yarl import URL

from monitor.bridge.pseudonym import Pseudonymizer, load_pseudonym_key
from monitor.clinical.alert import Alert
from monitor.clinical.analytes import DEFAULT_LLN
from monitor.clinical.stored_state import dump_state
from monitor.clinical.watch import PatientSummary, patient_summary
from monitor.dashboard.routes import (
    CONTENT_SECURITY_POLICY,
    STATIC_TYPES,
    load_static,
    pseudonymizer,
    reveals_patient_ids,
    security_headers,
)
from monitor.dashboard.view import MASK
from monitor.settings import MonitorSettings
from monitor.stream.app import MonitorApp
from tests.builders import cbc, replay

TOKEN = "unit-test-token-19c2"
PATIENT = "MRN-5521"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = "unit-test-pseudonym-key-4d0b"
REF = "ref:" + Pseudonymizer(KEY.encode())(PATIENT)


def test_static_files_ship_with_the_package_and_load_nothing_from_elsewhere() -> None:
    static = load_static()
    assert set(static) == set(STATIC_TYPES)
    for name, body in static.items():
        text = body.decode()
        # The SVG namespace is a name, not a request; nothing else may point outside.
        outside = re.findall(
            r"(?:https?:)?//[\w.-]+", text.replace("http://www.w3.org/2000/svg", "")
        )
        assert [u for u in outside if not u.startswith("//")] == [], name
        assert not re.search(r"""(?:src|href)\s*=\s*["']//""", text), name
    html = static["index.html"].decode()
    assert 'src="/static/dashboard.js"' in html
    assert 'href="/static/dashboard.css"' in html
    # CSP default-src 'self' forbids inline code: none may be present.
    assert "<script>" not in html
    assert "<style" not in html
    assert " style=" not in html
    assert " onclick=" not in html


def test_the_token_reveals_ids_only_when_it_matches() -> None:
    with_token = MonitorSettings(api_token=TOKEN)
    assert reveals_patient_ids(with_token, f"Bearer {TOKEN}")
    assert not reveals_patient_ids(with_token, f"Bearer {TOKEN}x")
    assert not reveals_patient_ids(with_token, TOKEN)
    assert not reveals_patient_ids(with_token, "")
    assert not reveals_patient_ids(MonitorSettings(), "Bearer ")


def test_the_dashboard_ref_is_the_bridges_patient_ref_for_the_same_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both take MONITOR_PSEUDONYM_KEY from the settings, trimmed: the refs match."""
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "  cl\u00e9-partag\u00e9e-\u00fc-0123456789\t\n")
    dashboard = pseudonymizer(MonitorSettings())
    bridge = Pseudonymizer(load_pseudonym_key(MonitorSettings()))
    assert dashboard is not None
    for patient_id in (PATIENT, "MRN-0042", "p\u00e4tient-\u00f8"):
        assert dashboard(patient_id) == bridge(patient_id)
    assert pseudonymizer(MonitorSettings(pseudonym_key=None)) is None


@pytest.fixture
def monitor(tmp_path: Any) -> MonitorApp:
    settings = MonitorSettings(
        store="memory", data_dir=tmp_path, api_token=TOKEN, pseudonym_key=KEY
    )
    return MonitorApp(settings)


def owned_here(monitor: MonitorApp, monkeypatch: pytest.MonkeyPatch, stored: bytes) -> list[Any]:
    """Faust's router answers "this worker owns the patient", whose stored state is ``stored``;
    the returned list records each (table, key) the router was asked about."""
    routed: list[Any] = []

    async def this_node_owns_it(table: str, key: Any, web: Any, request: Any) -> Any:
        routed.append((table, key))
        raise SameNode()

    monkeypatch.setattr(monitor.app.router, "route_req", this_node_owns_it)
    monkeypatch.setattr(monitor.table, "get", {PATIENT.encode(): stored}.get)
    return routed


@pytest_asyncio.fixture
async def client(monitor: MonitorApp) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(monitor.app.web.web_app)) as test_client:
        yield test_client


def course() -> tuple[list[Alert], bytes]:
    state, alerts, _ = replay(
        [
            cbc("r1", 0, patient_id=PATIENT, neutrophils=0.8),
            cbc("r2", 24, patient_id=PATIENT, neutrophils=0.4),
        ]
    )
    return alerts, dump_state(state)


@pytest.mark.asyncio
async def test_page_and_static_files_are_served_with_a_strict_policy(
    client: TestClient[Any, Any],
) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert 'data-testid="episodes-table"' in await page.text()
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    script = await client.get("/static/dashboard.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert (await client.get("/static/dashboard.css")).content_type == "text/css"
    assert (await client.get("/static/other.js")).status == 404
    assert (await client.get("/static/index.html")).status == 404


@pytest.mark.asyncio
async def test_dashboard_api_masks_ids_without_the_token(
    monitor: MonitorApp, client: TestClient[Any, Any]
) -> None:
    alerts, _ = course()
    for alert in alerts:
        monitor.dashboard.apply(alert)
    masked = await client.get("/api/dashboard")
    assert masked.status == 200
    assert masked.headers["Cache-Control"] == "no-store"
    text = await masked.text()
    assert PATIENT not in text
    body = await masked.json()
    assert body["masked"] is True
    assert body["episodes"][0]["patient"] == REF
    assert {item["patient"] for item in body["recent"]} == {REF}
    assert body["counts"]["neutropenia"]["4"] == 1
    wrong = await (
        await client.get("/api/dashboard", headers={"Authorization": "Bearer no"})
    ).json()
    assert wrong["masked"] is True
    revealed = await (await client.get("/api/dashboard", headers=AUTH)).json()
    assert revealed["masked"] is False
    assert revealed["episodes"][0]["patient"] == PATIENT


@pytest.mark.asyncio
async def test_trend_is_answered_from_the_owners_table(
    monitor: MonitorApp, client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts, stored = course()
    for alert in alerts:
        monitor.dashboard.apply(alert)
    dedup_key = alerts[0].dedup_key
    routed = owned_here(monitor, monkeypatch, stored)
    response = await client.get(f"/api/episodes/{dedup_key}/trend")
    assert response.status == 200
    assert routed == [("patients", PATIENT)]
    body = await response.json()
    assert PATIENT not in await response.text()
    assert body["patient"] == REF
    assert body["condition"] == "neutropenia"
    assert body["open"] is True
    (series,) = body["series"]
    assert [p["grade"] for p in series["points"]] == [3, 4]
    revealed = await (await client.get(f"/api/episodes/{dedup_key}/trend", headers=AUTH)).json()
    assert revealed["patient"] == PATIENT
    assert (await client.get("/api/episodes/unknown-key/trend")).status == 404


@pytest.mark.asyncio
async def test_without_a_pseudonym_key_ids_are_fully_masked(tmp_path: Path) -> None:
    keyless = MonitorApp(MonitorSettings(store="memory", data_dir=tmp_path, api_token=TOKEN))
    alerts, _ = course()
    for alert in alerts:
        keyless.dashboard.apply(alert)
    async with TestClient(TestServer(keyless.app.web.web_app)) as keyless_client:
        response = await keyless_client.get("/api/dashboard")
        body = await response.json()
    assert body["masked"] is True
    assert body["episodes"][0]["patient"] == MASK
    assert {item["patient"] for item in body["recent"]} == {MASK}
    assert "5521" not in await response.text()


def assert_security_headers(headers: Any) -> None:
    for name, value in security_headers().items():
        assert headers.get(name) == value, name


@pytest.mark.asyncio
async def test_a_forwarded_trend_keeps_the_security_headers(
    monitor: MonitorApp,
    client: TestClient[Any, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's router forwards to the owner (a second app here) and rebuilds its answer."""
    owner = MonitorApp(
        MonitorSettings(
            store="memory", data_dir=tmp_path / "owner", api_token=TOKEN, pseudonym_key=KEY
        )
    )
    alerts, stored = course()
    for app in (monitor, owner):
        for alert in alerts:
            app.dashboard.apply(alert)
    monkeypatch.setattr(owner.table, "get", {PATIENT.encode(): stored}.get)

    async def owner_is_this_node(table: str, key: Any, web: Any, request: Any) -> Any:
        raise SameNode()

    monkeypatch.setattr(owner.app.router, "route_req", owner_is_this_node)
    dedup_key = alerts[0].dedup_key
    try:
        async with TestClient(TestServer(owner.app.web.web_app)) as owner_client:
            owner_url = URL(str(owner_client.make_url("/")))
            monkeypatch.setattr(monitor.app.router, "key_store", lambda table, key: owner_url)
            direct = await owner_client.get(f"/api/episodes/{dedup_key}/trend")
            forwarded = await client.get(f"/api/episodes/{dedup_key}/trend")
            assert forwarded.status == 200
            assert await forwarded.json() == await direct.json()
            assert (await forwarded.json())["patient"] == REF
            assert_security_headers(direct.headers)
            assert_security_headers(forwarded.headers)
            revealed = await client.get(f"/api/episodes/{dedup_key}/trend", headers=AUTH)
            assert (await revealed.json())["patient"] == PATIENT
            assert_security_headers(revealed.headers)
    finally:
        await monitor.app._maybe_close_http_client()


@pytest.mark.asyncio
async def test_a_trend_with_no_known_owner_is_a_503_with_the_security_headers(
    monitor: MonitorApp, client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts, _ = course()
    for alert in alerts:
        monitor.dashboard.apply(alert)

    def no_owner(table: str, key: Any) -> URL:
        raise KeyError(key)

    monkeypatch.setattr(monitor.app.router, "key_store", no_owner)
    response = await client.get(f"/api/episodes/{alerts[0].dedup_key}/trend")
    assert response.status == 503
    assert_security_headers(response.headers)
    assert PATIENT not in await response.text()


def watched_course() -> tuple[PatientSummary, bytes]:
    """A patient 9 days after a dose (by the wall clock: the list is judged at request time)."""
    now = datetime.now(UTC)
    dose = now - timedelta(days=9)
    state, _, _ = replay(
        [
            cbc("w1", 0, patient_id=PATIENT, last_chemo_at=dose, neutrophils=1.6, platelets=90),
            cbc("w2", 24, patient_id=PATIENT, last_chemo_at=dose, neutrophils=0.9, platelets=70),
        ]
    )
    summary = patient_summary(
        state, PATIENT, now, window=(7, 14), ctcae_version="5.0", default_lln=DEFAULT_LLN
    )
    assert summary is not None
    return summary, dump_state(state)


@pytest.mark.asyncio
async def test_watchlist_api_filters_by_ward_masks_ids_and_serves_the_trend_from_the_owner(
    monitor: MonitorApp, client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, stored = watched_course()
    now = datetime.now(UTC)
    monitor.watchlist.apply(PATIENT, summary, now)
    masked = await client.get("/api/watchlist?ward=oncology-4b")
    assert masked.status == 200
    assert_security_headers(masked.headers)
    assert PATIENT not in await masked.text()
    body = await masked.json()
    assert body["ward"] == "oncology-4b"
    (row,) = body["patients"]
    assert row["patient"] == REF
    assert row["days_since_chemo"] == 9
    assert row["counts"]["neutrophils"]["direction"] == "falling"
    assert row["counts"]["platelets"]["grade"] == 2
    other = await (await client.get("/api/watchlist?ward=hematology-2a")).json()
    assert other["patients"] == []
    revealed = await (await client.get("/api/watchlist", headers=AUTH)).json()
    assert revealed["ward"] is None
    assert revealed["patients"][0]["patient"] == PATIENT
    # The ward selector lists wards the watch list has seen, even with no episode there.
    dashboard = await (await client.get("/api/dashboard?ward=oncology-4b")).json()
    assert dashboard["wards"] == ["oncology-4b"]
    assert dashboard["ward"] == "oncology-4b"

    routed = owned_here(monitor, monkeypatch, stored)
    trend = await client.get(f"/api/watchlist/{row['watch_id']}/trend")
    assert trend.status == 200
    assert routed == [("patients", PATIENT)]
    assert_security_headers(trend.headers)
    assert PATIENT not in await trend.text()
    series = (await trend.json())["series"]
    assert [s["analyte"] for s in series] == ["neutrophils", "platelets"]
    assert [p["value"] for p in series[0]["points"]] == [1.6, 0.9]
    assert (await client.get("/api/watchlist/unknown/trend")).status == 404


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("ward=" + "oncology-4b-" * 6, "at most 64 characters"),
        ("ward=oncology-4b&ward=hematology-2a", "at most one ward"),
        ("ward=oncology%0A4b", "control characters"),
        ("ward=onco%00logy-4b", "control characters"),
    ],
)
async def test_an_invalid_ward_is_a_400_never_every_wards_patients(
    monitor: MonitorApp, client: TestClient[Any, Any], query: str, rule: str
) -> None:
    """A bookmarked ward must not silently become 'all wards' (the whole hospital)."""
    summary, _ = watched_course()
    monitor.watchlist.apply(PATIENT, summary, datetime.now(UTC))
    for path in ("/api/dashboard", "/api/watchlist"):
        for headers in ({}, AUTH):
            response = await client.get(URL(f"{path}?{query}", encoded=True), headers=headers)
            assert response.status == 400, (path, query)
            assert_security_headers(response.headers)
            body = await response.json()
            assert body["error"].startswith("invalid ward: ")
            assert rule in body["error"]
            assert set(body) == {"error"}
            text = await response.text()
            assert PATIENT not in text
            assert REF not in text
            assert "oncology" not in text  # the value is not echoed back


@pytest.mark.asyncio
async def test_a_ward_of_the_longest_length_or_blank_is_answered(
    monitor: MonitorApp, client: TestClient[Any, Any]
) -> None:
    summary, _ = watched_course()
    monitor.watchlist.apply(PATIENT, summary, datetime.now(UTC))
    longest = "w" * 64
    body = await (await client.get(f"/api/watchlist?ward={longest}")).json()
    assert body["ward"] == longest
    assert body["patients"] == []
    padded = await (await client.get("/api/watchlist?ward=%20oncology-4b%20")).json()
    assert padded["ward"] == "oncology-4b"
    assert len(padded["patients"]) == 1
    for query in ("", "?ward=", "?ward=%20%20"):
        every = await (await client.get(f"/api/watchlist{query}")).json()
        assert every["ward"] is None
        assert len(every["patients"]) == 1
