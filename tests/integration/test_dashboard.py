"""The lab-ops dashboard in headless Chromium, against two real workers on the embedded broker.

Results go to Kafka, the workers publish alerts, every worker folds the alert topic into its
dashboard view, and the page (served by either worker) shows the open episode, its trend chart
(answered by the worker that owns the patient, forwarded there by Faust's router) and the
resolve when it arrives, without a reload. Chromium is Debian's ``/usr/bin/chromium`` driven by
playwright; no browser is downloaded. Waiting is by polling with deadlines (playwright's
``expect`` and ``wait_for``), never fixed sleeps.

A ward's bookmark (``/?ward=...``) shows only that ward, and its nadir watch list shows a patient
in the window before any episode opens, then the episode once one does: the patient is owned by
the worker that does not serve the page (the list comes from the summaries topic, the trend is
forwarded to the owner).

``UPDATE_SCREENSHOT=1`` also writes the screenshots to ``docs/dashboard.png`` and
``docs/watchlist.png``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from monitor.bridge.pseudonym import Pseudonymizer
from monitor.dashboard.routes import security_headers
from monitor.kafka.clients import publish
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from tests.integration.isolation import isolated_env, topic_names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token-5e81"
PSEUDONYM_KEY = "dashboard-test-pseudonym-key-a2c7"
KAFKA_WAIT_MS = 40_000  # a result's alert reaching the page: normally well under 5 s
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
DOCS_WATCHLIST = DOCS_SCREENSHOT.with_name("watchlist.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
USED_PATIENT_IDS: set[str] = set()  # every id this module sends: none may reach a log


class Deployment:
    def __init__(self, broker: EmbeddedBroker, name: str, root: Path) -> None:
        self.broker = broker
        self.topics = topic_names(name)
        env = {
            **isolated_env(name),
            "MONITOR_PARTITIONS": "2",
            "MONITOR_API_TOKEN": TOKEN,
            "MONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        }
        self.workers = [
            WorkerProcess(label, broker.url, root / label, env=env, log_dir=root / "logs")
            for label in ("dash-1", "dash-2")
        ]

    def results(self, *results: dict[str, Any]) -> list[tuple[bytes | None, bytes]]:
        return [(r["patient_id"].encode(), json.dumps(r).encode()) for r in results]

    async def publish(self, *results: dict[str, Any]) -> None:
        await publish(self.broker.bootstrap, self.topics["results"], self.results(*results))

    async def publish_vitals(self, *vitals: dict[str, Any]) -> None:
        records = [(v["patient_id"].encode(), json.dumps(v).encode()) for v in vitals]
        await publish(self.broker.bootstrap, self.topics["vitals"], records)

    def owner_of(self, patient: str) -> WorkerProcess:
        """The worker that owns the patient's partition, as Faust's router says."""
        status, owner = self.workers[0].get(f"/router/patients/{patient}/")
        assert status == 200
        (found,) = [w for w in self.workers if urlsplit(str(owner)).port == w.web_port]
        return found


@pytest.fixture(scope="module")
def deployment(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two workers sharing the partitions of their own topics, for this module's tests."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    name = f"dashboard-{uuid.uuid4().hex[:8]}"
    deployment = Deployment(broker, name, tmp_path_factory.mktemp("dashboard"))
    try:
        for worker in deployment.workers:
            worker.start()
        deadline = time.monotonic() + 90
        while not all(answers_ok(w, "/readyz") for w in deployment.workers):
            for worker in deployment.workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    pytest.fail(f"{worker.name} exited; see {worker.log_path}")
            assert time.monotonic() < deadline, "workers not ready in 90 s"
            time.sleep(0.25)
        yield deployment
    finally:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda w: w.stop(), deployment.workers))


def answers_ok(worker: WorkerProcess, path: str) -> bool:
    try:
        return worker.get(path)[0] == 200
    except OSError:
        return False


def result(
    result_id: str,
    patient: str,
    at: datetime,
    ward: str = "oncology-4b",
    chemo_days: float = 9,
    **values: float,
) -> dict[str, Any]:
    units = {"neutrophils": "10*9/L", "wbc": "10*9/L", "platelets": "10*9/L", "hemoglobin": "g/dL"}
    return {
        "result_id": result_id,
        "patient_id": patient,
        "collected_at": at.isoformat(),
        "status": "final",
        "sex": "female",
        "components": {a: {"value": v, "unit": units[a]} for a, v in values.items()},
        "context": {"ward": ward, "last_chemo_at": (at - timedelta(days=chemo_days)).isoformat()},
    }


def patient_ref(patient: str) -> str:
    """What a tokenless visitor sees: the paging bridge's patient_ref for the same key."""
    return "ref:" + Pseudonymizer(PSEUDONYM_KEY.encode())(patient)


def new_patient() -> str:
    patient = f"MRN-{random.randrange(10**7, 10**8)}"
    USED_PATIENT_IDS.add(patient)
    return patient


def row_of(page: Page, patient_text: str) -> Any:
    return (
        page.get_by_test_id("episode-row")
        .filter(has_text=patient_text)
        .filter(has_text="neutropenia")
    )


@pytest.mark.asyncio
async def test_dashboard_shows_an_episode_its_trend_and_its_resolve(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    patient = new_patient()
    masked = patient_ref(patient)
    # Context for the page: two other patients with open episodes.
    others = [
        result(
            "o1",
            new_patient(),
            now - timedelta(hours=30),
            ward="hematology-2a",
            platelets=38,
        ),
        result(
            "o2",
            new_patient(),
            now - timedelta(minutes=50),
            ward="oncology-4b",
            hemoglobin=9.1,
        ),
    ]
    await deployment.publish(
        *others,
        result("p1", patient, now - timedelta(days=3), neutrophils=2.9),
        result("p2", patient, now - timedelta(hours=27), neutrophils=1.3),
        result("p3", patient, now - timedelta(hours=3, minutes=12), neutrophils=0.4),
    )

    requests: list[str] = []
    console_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A trend asked of a worker whose view lags by a moment is a 404 the page retries;
        # anything else (a CSP violation, a missing file, a script error) is a fault.
        where = urlsplit(message.location.get("url", "")).path
        if message.type == "error" and not where.startswith(("/api/episodes/", "/api/watchlist/")):
            console_errors.append(message.text)

    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", on_console)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            # The second worker serves the page: the view covers the whole system anyway.
            serving = deployment.workers[1]
            response = await page.goto(serving.url + "/")
            assert response is not None
            assert response.ok
            assert "default-src 'self'" in (await response.all_headers())["content-security-policy"]

            # 1. The episode shows, masked: G4 neutropenia, open since its G2 27 h ago.
            row = row_of(page, masked)
            await expect(row).to_have_count(1, timeout=KAFKA_WAIT_MS)
            await expect(row.get_by_test_id("episode-grade")).to_have_text("G4")
            await expect(row.get_by_test_id("episode-ward")).to_have_text("oncology-4b")
            await expect(row.get_by_test_id("episode-open-for")).to_have_text("1 d 3 h")
            assert patient not in await page.content()
            await expect(page.get_by_test_id("mask-state")).to_have_text("ids masked")
            cell = page.locator(
                '[data-testid="count-cell"][data-condition="neutropenia"][data-grade="4"]'
            )
            await expect(cell).to_have_text("1")

            # 2. With the token, the same row shows the real id.
            await page.get_by_test_id("token-input").fill(TOKEN)
            await page.get_by_test_id("token-save").click()
            row = row_of(page, patient)
            await expect(row).to_have_count(1, timeout=10_000)
            await expect(page.get_by_test_id("mask-state")).to_have_text("ids shown")

            # 3. Clicking it draws the ANC trend: three results, one path through them.
            await row.click()
            path = page.get_by_test_id("trend-path")
            await expect(path).to_have_count(1, timeout=15_000)
            d = await path.get_attribute("d") or ""
            assert d.startswith("M"), d
            assert d.count("L") == 2, d
            await expect(page.get_by_test_id("trend-chart")).to_have_attribute(
                "data-analyte", "neutrophils"
            )
            await expect(page.get_by_test_id("trend-title")).to_contain_text(patient)

            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot))
            assert shot.read_bytes().startswith(PNG_MAGIC)
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, DOCS_SCREENSHOT)

            # 4. A recovery resolves the episode: the row goes, the feed says so, no reload.
            navigations = len([u for u in requests if urlsplit(u).path == "/"])
            await deployment.publish(
                result("p4", patient, now - timedelta(minutes=5), neutrophils=2.6)
            )
            await expect(row).to_have_count(0, timeout=KAFKA_WAIT_MS)
            resolved = page.locator('[data-testid="feed-item"][data-event="resolved"]').filter(
                has_text=patient
            )
            await expect(resolved).to_have_count(1)
            await expect(resolved).to_contain_text("neutropenia")
            await expect(page.get_by_test_id("trend-title")).to_contain_text("resolved")
            assert len([u for u in requests if urlsplit(u).path == "/"]) == navigations
        finally:
            await browser.close()

    assert requests, "the page made no request at all"
    outside = [u for u in requests if urlsplit(u).hostname not in LOCAL_HOSTS]
    assert outside == [], f"requests left localhost: {outside}"
    assert console_errors == [], console_errors


def test_trend_is_forwarded_to_the_owner_and_masked_without_the_token(
    deployment: Deployment,
) -> None:
    """Both workers answer a trend: the one not owning the patient forwards to the other."""
    now = datetime.now(UTC).replace(microsecond=0)
    patient = new_patient()
    asyncio.run(
        deployment.publish(result("f1", patient, now - timedelta(hours=1), neutrophils=0.7))
    )
    first, second = deployment.workers
    deadline = time.monotonic() + KAFKA_WAIT_MS / 1000
    keys: list[str] = []
    while time.monotonic() < deadline:
        views = [
            w.get("/api/dashboard", {"Authorization": f"Bearer {TOKEN}"})[1]
            for w in (first, second)
        ]
        keys = [
            e["dedup_key"]
            for e in views[0]["episodes"] + views[1]["episodes"]
            if e["patient"] == patient
        ]
        if len(keys) == 2:
            break
        time.sleep(0.25)
    assert len(keys) == 2, "both workers must show the episode"
    assert keys[0] == keys[1]
    # Faust's own router names the owner: the other worker can only answer by forwarding.
    status, owner = first.get(f"/router/patients/{patient}/")
    assert status == 200
    owners = [w for w in (first, second) if urlsplit(str(owner)).port == w.web_port]
    assert len(owners) == 1, (owner, first.web_port, second.web_port)
    # The dashboards show the episode from the alert topic; the trend reads the patient's state,
    # which the owner stores only once the alert is acknowledged (monitor.stream.batch), so it
    # can answer 404 ("not known here yet") for a moment after the episode shows.
    stored_by = time.monotonic() + 30
    answers = [trend_once_stored(w, keys[0], stored_by) for w in (first, second)]
    assert [status for status, _, _ in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]
    # The forwarded answer (Faust's router rebuilds it) has the headers of the owner's own.
    for _, _, headers in answers:
        for header, value in security_headers().items():
            assert headers.get(header.lower()) == value, (header, headers)
    body = answers[0][1]
    assert body["patient"] == patient_ref(patient)
    assert patient not in json.dumps([body for _, body, _ in answers])
    assert [p["value"] for p in body["series"][0]["points"]] == [0.7]
    for worker in deployment.workers:
        log = worker.log_path.read_text()
        assert not [p for p in USED_PATIENT_IDS if p in log], f"patient id in {worker.log_path}"


def trend_with_headers(worker: WorkerProcess, dedup_key: str) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers by lower-case name) of a tokenless trend request."""
    with urllib.request.urlopen(f"{worker.url}/api/episodes/{dedup_key}/trend", timeout=5) as r:
        return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}


def trend_once_stored(
    worker: WorkerProcess, dedup_key: str, deadline: float
) -> tuple[int, Any, dict[str, str]]:
    """``trend_with_headers``, asked again while it answers 404 until ``deadline`` (monotonic)."""
    while True:
        try:
            return trend_with_headers(worker, dedup_key)
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.25)


@pytest.mark.asyncio
async def test_a_ward_bookmark_shows_its_watch_list_before_and_after_an_episode(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    suffix = uuid.uuid4().hex[:4]
    ward, elsewhere = f"oncology-{suffix}", f"hematology-{suffix}"
    watched = new_patient()
    owner = deployment.owner_of(watched)
    serving = next(w for w in deployment.workers if w is not owner)
    febrile, low, early, other = (new_patient() for _ in range(4))
    two_h = now - timedelta(hours=2)
    # A synthetic cohort of one ward, and a patient of another ward in the same window.
    await deployment.publish(
        result("w1", watched, now - timedelta(days=1), ward, 8, neutrophils=3.4, platelets=210,
               hemoglobin=12.6),
        result("w2", watched, two_h, ward, 9, neutrophils=2.1, platelets=180, hemoglobin=12.4),
        result("f1", febrile, two_h, ward, 10, neutrophils=1.4, platelets=120, hemoglobin=10.8),
        result("l1", low, now - timedelta(days=1), ward, 11, neutrophils=0.9, platelets=60,
               hemoglobin=9.6),
        result("l2", low, two_h, ward, 12, neutrophils=0.4, platelets=41, hemoglobin=9.4),
        result("e1", early, two_h, ward, 5, neutrophils=3.2, platelets=250, hemoglobin=13.1),
        result("x1", other, two_h, elsewhere, 9, neutrophils=0.3, platelets=30),
    )  # fmt: skip
    refs = {p: patient_ref(p) for p in (watched, febrile, low, early, other)}

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            response = await page.goto(f"{serving.url}/?ward={ward}")
            assert response is not None
            assert response.ok

            # 1. The ward's watch list, ranked: febrile first, then lowest ANC; day 5 is
            # "before" the window. No other ward anywhere on the page.
            rows = page.get_by_test_id("watch-row")
            await expect(rows).to_have_count(4, timeout=KAFKA_WAIT_MS)
            await expect(rows.get_by_test_id("watch-patient")).to_have_text(
                [refs[low], refs[febrile], refs[watched], refs[early]], timeout=KAFKA_WAIT_MS
            )
            # A fever moves its patient to the top. (Sent once the results are in: the
            # results and vitals agents of one worker write the same table.)
            await deployment.publish_vitals(
                {
                    "observation_id": f"VS-{suffix}",
                    "patient_id": febrile,
                    "measured_at": (now - timedelta(hours=1)).isoformat(),
                    "temperature": 38.7,
                    "unit": "Cel",
                }
            )
            await expect(rows.get_by_test_id("watch-patient")).to_have_text(
                [refs[febrile], refs[low], refs[watched], refs[early]], timeout=KAFKA_WAIT_MS
            )
            await expect(page.get_by_test_id("ward-filter")).to_have_value(ward)
            assert (await page.evaluate("location.search")) == f"?ward={ward}"
            row = rows.filter(has_text=refs[watched])
            await expect(row.get_by_test_id("watch-day")).to_contain_text("day 9")
            await expect(row.get_by_test_id("watch-anc")).to_contain_text("2.1")
            await expect(row.get_by_test_id("watch-anc-direction")).to_have_text("\u2193 falling")
            await expect(row.get_by_test_id("watch-episodes")).to_have_text("none")
            await expect(
                rows.filter(has_text=refs[febrile]).get_by_test_id("watch-fever")
            ).to_have_text("38.7 \u00b0C")
            await expect(
                rows.filter(has_text=refs[early]).get_by_test_id("watch-day")
            ).to_contain_text("before")
            episodes = page.get_by_test_id("episode-row")
            await expect(episodes.filter(has_text=refs[low]).first).to_be_visible(
                timeout=KAFKA_WAIT_MS
            )
            await expect(episodes.get_by_test_id("episode-ward")).to_have_text(
                [ward] * await episodes.count()
            )
            await expect(page.get_by_test_id("feed-item").filter(has_text=elsewhere)).to_have_count(
                0
            )
            await expect(
                page.get_by_test_id("feed-item").filter(has_text=ward).first
            ).to_be_visible()
            content = await page.content()
            assert refs[other] not in content
            assert watched not in content
            # The API answers the same, ranked and masked.
            status, body = serving.get(f"/api/watchlist?ward={ward}")
            assert status == 200
            assert [p["patient"] for p in body["patients"]] == [
                refs[febrile],
                refs[low],
                refs[watched],
                refs[early],
            ]
            status, body = serving.get(f"/api/dashboard?ward={elsewhere}")
            assert {e["patient"] for e in body["episodes"]} == {refs[other]}
            assert ward in body["wards"]
            assert elsewhere in body["wards"]

            # 2. Its counts fall further: the episode opens and the watch list marks it.
            await deployment.publish(
                result("w3", watched, now - timedelta(minutes=20), ward, 9, neutrophils=0.6,
                       platelets=150, hemoglobin=12.1)
            )  # fmt: skip
            marked = row.get_by_test_id("watch-episode")
            await expect(marked).to_have_count(1, timeout=KAFKA_WAIT_MS)
            await expect(marked).to_contain_text("neutropenia")
            await expect(marked).to_contain_text("G3")
            await expect(rows.get_by_test_id("watch-patient")).to_have_text(
                [refs[febrile], refs[low], refs[watched], refs[early]]
            )
            await expect(episodes.filter(has_text=refs[watched])).to_have_count(1)

            # 3. A click draws its counts, answered by the owner (not the serving worker).
            await row.click()
            anc = page.locator('[data-testid="trend-chart"][data-analyte="neutrophils"]')
            await expect(anc).to_have_count(1, timeout=15_000)
            d = await anc.get_by_test_id("trend-path").get_attribute("d") or ""
            assert d.count("L") == 2, d
            await expect(page.get_by_test_id("trend-chart")).to_have_count(3)
            await expect(page.get_by_test_id("trend-title")).to_contain_text(refs[watched])

            # 4. "All wards" shows the other ward's patient too, and drops the bookmark.
            await page.get_by_test_id("ward-filter").select_option("")
            await expect(rows.filter(has_text=refs[other])).to_have_count(1, timeout=10_000)
            assert (await page.evaluate("location.search")) == ""

            await page.get_by_test_id("ward-filter").select_option(ward)
            await expect(rows).to_have_count(4, timeout=10_000)
            shot = tmp_path / "watchlist.png"
            await page.screenshot(path=str(shot))
            assert shot.read_bytes().startswith(PNG_MAGIC)
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(shot, DOCS_WATCHLIST)

            # 5. A bookmark with a ward no ward can have (over 64 characters) shows nothing but
            # the error: never every ward's patients.
            bad = await browser.new_page()
            await bad.goto(f"{serving.url}/?ward={ward}{'-x' * 32}")
            await expect(bad.get_by_test_id("error-banner")).to_contain_text(
                "invalid ward: at most 64 characters", timeout=10_000
            )
            await expect(bad.get_by_test_id("content")).to_be_hidden()
            await expect(bad.get_by_test_id("watch-row")).to_have_count(0)
            await expect(bad.get_by_test_id("episode-row")).to_have_count(0)
            assert not [r for r in refs.values() if r in await bad.content()]
        finally:
            await browser.close()
    for worker in deployment.workers:
        log = worker.log_path.read_text()
        assert not [p for p in USED_PATIENT_IDS if p in log], f"patient id in {worker.log_path}"
