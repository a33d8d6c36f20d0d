// The lab-ops dashboard: polls /api/dashboard every 2 s and draws it. No framework, nothing
// loaded from elsewhere, no innerHTML: every value goes in through textContent.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "cbc-monitor-api-token";
  const FEED_SHOWN = 60;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const DIRECTION_ARROW = { falling: "\u2193", rising: "\u2191", stable: "\u2192" };

  const state = {
    data: null,
    watch: null, // the last /api/watchlist answer
    ward: new URLSearchParams(window.location.search).get("ward") || "",
    selected: null, // dedup_key of the episode, or "watch:<watch_id>", whose trend is shown
    trendFor: null, // "<dedup_key>|<last_event_at>|<masked>" of the trend on screen
    trendBusy: false,
    sortKey: "grade",
    sortDesc: true,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- the token ---------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function getJSON(url) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showMaskState(masked) {
    const pill = $("mask-state");
    if (!masked) {
      pill.textContent = "ids shown";
      pill.classList.add("revealed");
    } else {
      pill.textContent = token() ? "token not accepted: ids masked" : "ids masked";
      pill.classList.remove("revealed");
    }
  }

  // --- formatting --------------------------------------------------------------------------

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + m + " m";
    return m + " m";
  }

  function ago(nowIso, thenIso) {
    const seconds = (Date.parse(nowIso) - Date.parse(thenIso)) / 1000;
    return Number.isNaN(seconds) ? "" : duration(seconds) + " ago";
  }

  function when(iso) {
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return iso;
    return t.toLocaleString([], {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  function clock(iso) {
    const t = new Date(iso);
    return Number.isNaN(t.getTime()) ? "" : t.toLocaleTimeString([], { hour12: false });
  }

  const label = (condition) => condition.replace(/_/g, " ");

  function gradeBadge(grade) {
    return el("span", { class: "grade g" + grade, text: "G" + grade });
  }

  // --- episodes ----------------------------------------------------------------------------

  function sortedEpisodes(episodes) {
    const key = state.sortKey;
    const sign = state.sortDesc ? -1 : 1;
    return episodes.slice().sort((a, b) => {
      const x = a[key] ?? "";
      const y = b[key] ?? "";
      if (x < y) return -sign;
      if (x > y) return sign;
      return a.dedup_key < b.dedup_key ? -1 : 1;
    });
  }

  function renderEpisodes(data) {
    const filter = $("condition-filter").value;
    const shown = sortedEpisodes(data.episodes.filter((e) => !filter || e.condition === filter));
    const rows = shown.map((e) => {
      const row = el("tr", { "data-testid": "episode-row", "data-dedup-key": e.dedup_key }, [
        el("td", { class: "patient", "data-testid": "episode-patient", text: e.patient }),
        el("td", { "data-testid": "episode-condition", text: label(e.condition) }),
        el("td", { "data-testid": "episode-grade" }, [gradeBadge(e.grade)]),
        el("td", { class: "sev-" + e.severity, text: e.severity }),
        el("td", { "data-testid": "episode-ward", text: e.ward || "\u2014" }),
        el("td", { "data-testid": "episode-open-for", text: duration(e.open_seconds) }),
        el("td", {
          "data-testid": "episode-last-event",
          title: when(e.last_event_at) + ": " + e.summary,
          text: e.last_event + " " + ago(data.generated_at, e.last_event_at),
        }),
      ]);
      if (e.dedup_key === state.selected) row.classList.add("selected");
      row.addEventListener("click", () => select(e.dedup_key));
      return row;
    });
    $("episodes-body").replaceChildren(...rows);
    $("episodes-empty").hidden = rows.length > 0;
    $("episode-count").textContent = String(data.episodes.length);
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.classList.toggle("sorted", th.dataset.sort === state.sortKey);
    }
  }

  function renderFilter(data) {
    const select = $("condition-filter");
    const have = new Set([...select.options].map((o) => o.value));
    for (const condition of Object.keys(data.counts)) {
      if (!have.has(condition)) select.appendChild(el("option", { value: condition, text: label(condition) }));
    }
  }

  function renderCounts(data) {
    const rows = Object.entries(data.counts).map(([condition, byGrade]) =>
      el("tr", { "data-condition": condition }, [
        el("td", { class: "condition", text: label(condition) }),
        ...["1", "2", "3", "4"].map((g) => {
          const n = byGrade[g] || 0;
          return el("td", {
            class: (n ? "nonzero " : "") + "g" + g,
            "data-testid": "count-cell",
            "data-condition": condition,
            "data-grade": g,
            text: String(n),
          });
        }),
      ]),
    );
    $("counts-body").replaceChildren(...rows);
  }

  function renderFeed(data) {
    const items = data.recent.slice(0, FEED_SHOWN).map((a) =>
      el("li", { "data-testid": "feed-item", "data-event": a.event, "data-dedup-key": a.dedup_key }, [
        el("span", { class: "when", text: clock(a.emitted_at) }),
        el("span", { class: "event " + a.event, text: a.event }),
        el("strong", { text: label(a.condition) + " G" + a.grade }),
        document.createTextNode(" \u00b7 "),
        el("span", { class: "who", text: a.patient }),
        document.createTextNode(a.ward ? " \u00b7 " + a.ward : ""),
        el("span", { class: "summary", text: a.summary }),
      ]),
    );
    $("feed-list").replaceChildren(...items);
  }

  // --- ward --------------------------------------------------------------------------------

  function wardQuery() {
    return state.ward ? "?ward=" + encodeURIComponent(state.ward) : "";
  }

  function renderWards(data) {
    const select = $("ward-filter");
    const wards = new Set(data.wards);
    if (state.ward) wards.add(state.ward);
    const have = [...select.options].map((o) => o.value).slice(1);
    const want = [...wards].sort();
    if (have.join("\n") !== want.join("\n")) {
      select.replaceChildren(
        el("option", { value: "", text: "All wards" }),
        ...want.map((w) => el("option", { value: w, text: w })),
      );
    }
    select.value = state.ward;
  }

  function setWard(ward) {
    state.ward = ward;
    const url = new URL(window.location.href);
    if (ward) url.searchParams.set("ward", ward);
    else url.searchParams.delete("ward");
    window.history.replaceState(null, "", url.pathname + url.search);
    document.title = "CBC monitor \u00b7 " + (ward || "lab ops");
    schedule(0);
  }

  // --- watch list --------------------------------------------------------------------------

  function countCell(row, name, testid) {
    const c = row.counts[name];
    if (!c) return el("td", { "data-testid": testid, text: "\u2014" });
    const children = [el("span", { text: String(c.value) })];
    if (c.grade) children.push(document.createTextNode(" "), gradeBadge(c.grade));
    if (c.direction) {
      children.push(el("span", {
        class: "dir " + c.direction, "data-testid": testid + "-direction",
        title: c.direction + (c.previous !== null ? " from " + c.previous : ""),
        text: DIRECTION_ARROW[c.direction] + " " + c.direction,
      }));
    }
    return el("td", { "data-testid": testid, title: c.unit + ", " + when(c.collected_at) }, children);
  }

  function renderWatch(watch) {
    const rows = watch.patients.map((p) => {
      const key = "watch:" + p.watch_id;
      const episodes = p.episodes.map((e) =>
        el("span", { class: "ep", "data-testid": "watch-episode", "data-dedup-key": e.dedup_key }, [
          gradeBadge(e.grade), document.createTextNode(" " + label(e.condition)),
        ]));
      const row = el("tr", {
        "data-testid": "watch-row", "data-watch-id": p.watch_id,
        class: p.febrile ? "febrile" : null,
      }, [
        el("td", { class: "patient", "data-testid": "watch-patient", text: p.patient }),
        el("td", { class: "ward-col", "data-testid": "watch-ward", text: p.ward || "\u2014" }),
        el("td", { "data-testid": "watch-day" }, [
          el("span", { text: "day " + p.days_since_chemo }),
          el("span", { class: "phase " + p.phase, text: p.phase === "nadir" ? "nadir" : "before" }),
        ]),
        countCell(p, "neutrophils", "watch-anc"),
        countCell(p, "platelets", "watch-plt"),
        countCell(p, "hemoglobin", "watch-hgb"),
        el("td", p.febrile
          ? { class: "fever", "data-testid": "watch-fever", text: p.fever.celsius.toFixed(1) + " \u00b0C" }
          : { "data-testid": "watch-fever", text: "\u2014" }),
        el("td", { class: "episodes-cell", "data-testid": "watch-episodes" },
          episodes.length ? episodes : [document.createTextNode("none")]),
      ]);
      if (key === state.selected) row.classList.add("selected");
      row.addEventListener("click", () => select(key));
      return row;
    });
    $("watch-body").replaceChildren(...rows);
    // One ward chosen: its name is in the selector, the column would only repeat it.
    $("watchlist-table").classList.toggle("one-ward", Boolean(watch.ward));
    $("watch-empty").hidden = rows.length > 0;
    $("watch-count").textContent = String(rows.length);
    const w = watch.window;
    $("watch-window").textContent =
      "nadir window days " + w.first_day + "\u2013" + w.last_day + " after chemotherapy, and " +
      w.lead_days + " days before; febrile first, then lowest ANC";
  }

  // --- trend -------------------------------------------------------------------------------

  function select(dedupKey) {
    state.selected = dedupKey;
    state.trendFor = null;
    $("trend-panel").hidden = false;
    $("trend-title").textContent = "Trend";
    $("trend-note").textContent = "loading\u2026";
    $("trend-charts").replaceChildren();
    if (state.data) renderEpisodes(state.data);
    if (state.watch) renderWatch(state.watch);
    refreshTrend();
  }

  function trendSource(key) {
    if (key.startsWith("watch:")) {
      const id = key.slice(6);
      const p = state.watch && state.watch.patients.find((x) => x.watch_id === id);
      const stamp = p ? Object.values(p.counts).map((c) => c.collected_at).sort().pop() || "" : "gone";
      return ["/api/watchlist/" + encodeURIComponent(id) + "/trend", stamp];
    }
    const episode = state.data.episodes.find((e) => e.dedup_key === key);
    return ["/api/episodes/" + encodeURIComponent(key) + "/trend", episode ? episode.last_event_at : "closed"];
  }

  async function refreshTrend() {
    const key = state.selected;
    if (!key || state.trendBusy || !state.data) return;
    const [url, stamp] = trendSource(key);
    const version = key + "|" + stamp + "|" + state.data.masked;
    if (state.trendFor === version) return;
    state.trendBusy = true;
    try {
      const trend = await getJSON(url);
      if (state.selected !== key) return;
      state.trendFor = version;
      drawTrend(trend);
    } catch (error) {
      if (state.selected === key) $("trend-note").textContent = "trend not available yet (" + error.message + ")";
    } finally {
      state.trendBusy = false;
    }
  }

  function drawTrend(trend) {
    $("trend-title").textContent = trend.condition
      ? label(trend.condition) + " \u00b7 " + trend.patient + (trend.open ? "" : " \u00b7 resolved")
      : "counts \u00b7 " + trend.patient;
    $("trend-note").textContent =
      "CTCAE v" + trend.ctcae_version + "; dashed green: lower limit of normal; dotted: grade limits; " +
      "ringed: grade change held back as within the reference change value (not announced)";
    $("trend-charts").replaceChildren(...trend.series.map(chart));
  }

  function chart(series) {
    const W = 720, H = 190, L = 56, R = 40, T = 22, B = 26;
    const times = series.points.map((p) => new Date(p.at).getTime());
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 - t0 < 3600e3) { t0 -= 12 * 3600e3; t1 += 12 * 3600e3; }
    const marks = series.thresholds.map((t) => t.below);
    if (series.lln !== null) marks.push(series.lln);
    const top = Math.max(...series.points.map((p) => p.value), ...marks) * 1.12 || 1;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const root = svg("svg", {
      class: "chart", viewBox: "0 0 " + W + " " + H, role: "img",
      "data-testid": "trend-chart", "data-analyte": series.analyte,
      "aria-label": series.label + " trend",
    });
    root.appendChild(svg("rect", { class: "frame", x: L, y: T, width: W - L - R, height: H - T - B }));
    root.appendChild(svg("text", { class: "series-label", x: 4, y: 14 }, series.label + " (" + series.unit + ")"));
    for (const limit of series.thresholds) {
      if (limit.below > top) continue;
      root.appendChild(svg("line", { class: "limit", x1: L, x2: W - R, y1: y(limit.below), y2: y(limit.below) }));
      root.appendChild(svg("text", { class: "limit-label", x: W - R + 4, y: y(limit.below) + 3 }, "G" + limit.grade));
    }
    if (series.lln !== null) {
      root.appendChild(svg("line", { class: "lln", x1: L, x2: W - R, y1: y(series.lln), y2: y(series.lln) }));
      root.appendChild(svg("text", { class: "lln-label", x: W - R + 4, y: y(series.lln) + 3 }, "LLN"));
    }
    for (const v of [0, top / 2, top]) {
      root.appendChild(svg("text", { class: "axis-label", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, String(Number(v.toPrecision(3)))));
    }
    root.appendChild(svg("text", { class: "axis-label", x: L, y: H - 8 }, when(new Date(t0).toISOString())));
    root.appendChild(svg("text", { class: "axis-label", x: W - R, y: H - 8, "text-anchor": "end" }, when(new Date(t1).toISOString())));
    const d = series.points.map((p, i) => (i ? "L" : "M") + x(times[i]).toFixed(1) + " " + y(p.value).toFixed(1)).join(" ");
    root.appendChild(svg("path", { class: "line", d, "data-testid": "trend-path" }));
    series.points.forEach((p, i) => {
      const dot = svg("circle", {
        cx: x(times[i]).toFixed(1), cy: y(p.value).toFixed(1), r: 4,
        class: (p.status === "preliminary" ? "prelim" : "g" + (p.grade ?? 0)) + (p.suppressed ? " suppressed" : ""),
        "data-suppressed": p.suppressed ? "true" : "false",
      });
      dot.appendChild(svg("title", {}, when(p.at) + ": " + p.value + " " + series.unit + (p.grade !== null ? ", grade " + p.grade : "") +
        (p.suppressed ? " (within the reference change value: not announced)" : "")));
      root.appendChild(dot);
    });
    return root;
  }

  // --- the loop ----------------------------------------------------------------------------

  let timer = null;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  async function poll() {
    try {
      const query = wardQuery();
      const [data, watch] = await Promise.all([
        getJSON("/api/dashboard" + query), getJSON("/api/watchlist" + query),
      ]);
      state.data = data;
      state.watch = watch;
      renderWards(data);
      renderWatch(watch);
      renderFilter(data);
      renderEpisodes(data);
      renderCounts(data);
      renderFeed(data);
      showMaskState(data.masked);
      $("last-updated").textContent = "updated " + clock(data.generated_at) + " \u00b7 " + data.alerts_applied + " alerts read";
      $("error-banner").hidden = true;
      $("content").hidden = false;
      refreshTrend();
    } catch (error) {
      if (error.status === 400) {
        // A ward the worker refuses (too long, repeated): show nothing rather than every ward.
        state.data = null;
        state.watch = null;
        $("content").hidden = true;
        $("error-banner").textContent = error.message + "; nothing shown: fix the address or choose All wards";
      } else {
        $("error-banner").textContent = "cannot reach the worker (" + error.message + "); retrying";
      }
      $("error-banner").hidden = false;
    } finally {
      schedule(POLL_MS);
    }
  }

  function start() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      state.trendFor = null;
      schedule(0);
    });
    $("token-clear").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.trendFor = null;
      schedule(0);
    });
    $("trend-close").addEventListener("click", () => {
      state.selected = null;
      $("trend-panel").hidden = true;
      if (state.data) renderEpisodes(state.data);
      if (state.watch) renderWatch(state.watch);
    });
    $("ward-filter").addEventListener("change", () => setWard($("ward-filter").value));
    if (state.ward) document.title = "CBC monitor \u00b7 " + state.ward;
    $("condition-filter").addEventListener("change", () => state.data && renderEpisodes(state.data));
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.addEventListener("click", () => {
        if (state.sortKey === th.dataset.sort) state.sortDesc = !state.sortDesc;
        else { state.sortKey = th.dataset.sort; state.sortDesc = th.dataset.sort === "grade" || th.dataset.sort === "open_seconds"; }
        if (state.data) renderEpisodes(state.data);
      });
    }
    schedule(0);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
