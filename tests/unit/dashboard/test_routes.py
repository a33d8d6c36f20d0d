"""The dashboard's HTTP surface in-process: page, static files, API, masking, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from faust.exceptions import SameNode

from monitor.alert import Alert
from monitor.dashboard.routes import (
    CONTENT_SECURITY_POLICY,
    STATIC_TYPES,
    load_static,
    reveals_patient_ids,
)
from monitor.dashboard.view import mask_patient_id
from monitor.history import dump_state
from monitor.settings import MonitorSettings
from monitor.stream.app import MonitorApp
from tests.builders import cbc, replay

TOKEN = "unit-test-token-19c2"
PATIENT = "MRN-5521"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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


@pytest.fixture
def monitor(tmp_path: Any) -> MonitorApp:
    settings = MonitorSettings(store="memory", data_dir=tmp_path, api_token=TOKEN)
    return MonitorApp(settings)


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
    assert body["episodes"][0]["patient"] == mask_patient_id(PATIENT)
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
    routed: list[Any] = []

    async def this_node_owns_it(table: str, key: Any, web: Any, request: Any) -> Any:
        routed.append((table, key))
        raise SameNode()

    monkeypatch.setattr(monitor.app.router, "route_req", this_node_owns_it)
    monkeypatch.setattr(monitor.table, "get", {PATIENT.encode(): stored}.get)
    response = await client.get(f"/api/episodes/{dedup_key}/trend")
    assert response.status == 200
    assert routed == [("patients", PATIENT)]
    body = await response.json()
    assert PATIENT not in await response.text()
    assert body["patient"] == mask_patient_id(PATIENT)
    assert body["condition"] == "neutropenia"
    assert body["open"] is True
    (series,) = body["series"]
    assert [p["grade"] for p in series["points"]] == [3, 4]
    revealed = await (await client.get(f"/api/episodes/{dedup_key}/trend", headers=AUTH)).json()
    assert revealed["patient"] == PATIENT
    assert (await client.get("/api/episodes/unknown-key/trend")).status == 404
