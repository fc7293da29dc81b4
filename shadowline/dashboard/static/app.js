// shadowline dashboard: polls the JSON API and renders stages, gates, charts and disagreements.
// Every value from the API is inserted as text (never as HTML): outputs contain customer text.
"use strict";

const OVERVIEW_MS = 5000;
const DETAIL_MS = 10000;
const COLORS = ["#2f5bd3", "#d35400", "#16a085", "#8e44ad", "#c0392b", "#7f8c8d"];

const state = { overview: null, series: {}, disagreements: {}, charts: {}, controls: new Map(), sections: new Map(), detailAt: 0 };
window.shadowlineDashboard = state; // handy in the console, and what the browser test reads

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const pct = (x, d = 1) => (x == null ? "–" : (x * 100).toFixed(d) + "%");
const num = (x, d = 1) => (x == null ? "–" : Number(x).toFixed(d));
const time = (ms) => new Date(ms).toLocaleTimeString();

async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((body && body.error) || res.statusText);
    err.status = res.status;
    err.body = body || {};
    throw err;
  }
  return body;
}

function message(kind, text) {
  const box = document.getElementById("message");
  box.hidden = false;
  box.className = kind;
  box.textContent = text;
}

// -- actions -------------------------------------------------------------------------------------
function token() {
  return document.getElementById("token").value.trim();
}

async function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token() },
    body: JSON.stringify(body),
  });
}

function explainFailure(e, what) {
  if (e.status === 401) return `${what}: missing or wrong bearer token`;
  if (e.status === 403) return `${what}: the dashboard is read-only`;
  if (e.status === 409 && e.body.gates && e.body.gates.length) {
    const bad = e.body.gates.filter((g) => !g.passed).map((g) => `  ${g.name}: ${g.detail}`);
    return `${what} refused; failing gates: ${e.body.failing.join(", ")}\n${bad.join("\n")}`;
  }
  return `${what} failed: ${e.message}`;
}

async function promote(stage, ref, controls) {
  const force = controls.querySelector("input[type=checkbox]").checked;
  const reason = controls.querySelector("input[type=text]").value.trim();
  if (!confirm(`Promote ${ref} to serve ${stage}${force ? " (forced past failing gates)" : ""}?`)) return;
  try {
    const r = await post(`/api/stages/${stage}/promote`, { candidate: ref, force, reason: reason || null });
    message("ok", `promoted ${r.promoted} on ${stage}: ${r.forced ? "forced past failing gates: " + r.explain : "all gates pass"}`);
  } catch (e) {
    message(e.status === 409 ? "refused" : "error", explainFailure(e, `promotion of ${ref}`));
  }
  await refresh(true);
}

async function rollback(stage, previous) {
  if (!confirm(`Roll ${stage} back to ${previous}?`)) return;
  try {
    const r = await post(`/api/stages/${stage}/rollback`, { reason: "dashboard rollback" });
    message("ok", `rolled back ${stage}: ${r.replaced} → ${r.restored}`);
  } catch (e) {
    message("error", explainFailure(e, `rollback of ${stage}`));
  }
  await refresh(true);
}

// Controls keep what the user typed across re-renders: one node per (stage, candidate), reused.
function controlsFor(stage, ref) {
  const key = `${stage}/${ref}`;
  if (!state.controls.has(key)) {
    const box = el("div", { class: "controls" },
      el("label", {}, el("input", { type: "checkbox" }), " force"),
      el("input", { type: "text", placeholder: "reason (needed to force)" }));
    box.prepend(el("button", { class: "promote", onclick: () => promote(stage, ref, box) }, "Promote"));
    state.controls.set(key, box);
  }
  return state.controls.get(key);
}

// -- rendering -----------------------------------------------------------------------------------
function gateChips(gates) {
  return gates.map((g) => el("span", { class: "gate " + (g.passed ? "pass" : "fail"), title: g.detail }, g.name));
}

function candidateRow(stage, c, writable) {
  if (c.error) {
    return el("tr", { class: "candidate", dataset: { ref: c.ref } },
      el("td", { class: "ref" }, c.ref), el("td", { colspan: 10, class: "verdict-fail" }, c.error));
  }
  const s = c.stats;
  const noise = s.noise_samples ? `noise floor ${pct(s.noise_disagreement)} on ${s.noise_samples} replica samples` : "no replica running";
  return el("tr", { class: "candidate", dataset: { ref: c.ref } },
    el("td", {}, el("span", { class: "ref candidate-ref" }, c.ref), el("div", { class: "muted" }, "vs " + s.production)),
    el("td", { class: "num samples" }, s.samples),
    el("td", { class: "num" }, el("b", { class: "agreement-value" }, pct(s.agreement)),
      el("div", { class: "muted" }, `[${pct(s.agreement_low)}, ${pct(s.agreement_high)}]`)),
    el("td", { class: "num", title: noise }, pct(s.net_disagreement)),
    el("td", { class: "num" }, `${pct(s.prod_match_rate)} / ${pct(s.cand_match_rate)}`),
    el("td", { class: "num" }, `${num(s.production_p50_ms)} / ${num(s.production_p95_ms)}`),
    el("td", { class: "num" }, `${num(s.candidate_p50_ms)} / ${num(s.candidate_p95_ms)}`),
    el("td", { class: "num" }, pct(s.error_rate, 2)),
    el("td", { class: "num" }, pct(s.missing_rate, 2)),
    el("td", {}, el("div", {}, el("span", { class: c.passed ? "verdict-pass" : "verdict-fail" }, c.passed ? "promotable" : "not yet")),
      gateChips(c.gates)),
    el("td", {}, writable ? controlsFor(stage, c.ref) : el("span", { class: "muted" }, "read-only")));
}

function stageSection(st, writable) {
  const head = el("h2", {}, st.stage,
    el("small", {}, "active ", el("b", { class: "ref active-ref" }, st.active ? st.active.ref : "–"),
      ` · mirror ${pct(st.mirror_rate, 0)}`));
  const table = el("table", { class: "candidates" },
    el("thead", {}, el("tr", {}, ["candidate", "compared", "agreement [95%]", "net disagr.", "match prod / cand",
      "prod p50 / p95 ms", "cand p50 / p95 ms", "errors", "missing", "gates", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, st.candidates.map((c) => candidateRow(st.stage, c, writable))));
  const explains = st.candidates.filter((c) => !c.error && !c.passed)
    .map((c) => el("p", { class: "explain" }, `${c.ref}: ${c.explain}`));
  const section = el("section", { class: "card stage", dataset: { stage: st.stage } }, head,
    st.blocked_by.length ? el("p", { class: "blocked" }, "upstream stages have candidates in shadow: " + st.blocked_by.join("; ")) : null,
    table, explains,
    el("div", { class: "charts" },
      el("figure", {}, el("figcaption", {}, "Agreement with production per minute, with the 95% Wilson band"),
        el("div", { class: "chart chart-agreement" })),
      el("figure", {}, el("figcaption", {}, "Comparisons per minute and outcome match rate (vs what the agent sent)"),
        el("div", { class: "chart chart-volume" }))),
    el("h3", {}, "Recent disagreements"),
    el("table", { class: "disagreements" },
      el("thead", {}, el("tr", {}, ["time", "candidate", "customer asked", "production output", "candidate output", "agent sent"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, el("tr", {}, el("td", { colspan: 6, class: "muted" }, "loading…")))));
  return section;
}

function activesTable(ov) {
  const body = document.querySelector("#actives tbody");
  body.replaceChildren(...ov.stages.map((st) => {
    const previous = st.history.length ? st.history[0].ref : null;
    return el("tr", { dataset: { stage: st.stage } },
      el("td", {}, st.stage),
      el("td", { class: "ref" }, st.active ? st.active.ref : "–"),
      el("td", { class: "ref" }, st.candidates.map((c) => c.ref).join(", ") || "–"),
      el("td", { class: "ref" }, st.history.map((h) => h.ref).join(", ") || "–"),
      el("td", { class: "num" }, pct(st.mirror_rate, 0)),
      el("td", {}, ov.writable && previous
        ? el("button", { class: "secondary rollback", onclick: () => rollback(st.stage, previous) }, `Roll back to ${previous}`)
        : null));
  }));
}

function summarize(out) {
  if (out == null) return "(no output)";
  if (typeof out !== "object") return String(out);
  if (Array.isArray(out.hits)) return "top: " + (out.hits.map((h) => h.article_id).slice(0, 3).join(", ") || "none");
  for (const key of ["topic", "label", "verdict", "text", "summary"]) {
    if (out[key] != null) {
      const conf = typeof out.confidence === "number" ? ` (${out.confidence.toFixed(2)})` : "";
      return `${key}: ${out[key]}${conf}`;
    }
  }
  return JSON.stringify(out).slice(0, 160);
}

function outputCell(out) {
  return el("td", { class: "out" }, el("details", {}, el("summary", {}, summarize(out)),
    el("pre", {}, JSON.stringify(out, null, 2))));
}

function renderDisagreements(section, d) {
  const body = section.querySelector("table.disagreements tbody");
  if (!d.rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" },
      `no disagreement in the last ${d.records} comparisons`)));
    return;
  }
  body.replaceChildren(...d.rows.map((r) => el("tr", { class: "disagreement", dataset: { event: r.event_id } },
    el("td", { class: "num" }, time(r.created_ms)),
    el("td", { class: "ref" }, r.candidate),
    el("td", {}, r.question || el("span", { class: "muted" }, "(not in the recent answers)")),
    outputCell(r.production_output),
    outputCell(r.candidate_output),
    el("td", { class: "agent-sent" }, r.agent_sent
      ? [r.agent_sent, el("div", { class: "muted" }, r.agent_action)]
      : el("span", { class: "muted" }, "(no feedback yet)")))));
}

function aligned(candidates) {
  const xs = [...new Set(candidates.flatMap((c) => c.points.map((p) => p.t)))].sort((a, b) => a - b);
  const columns = candidates.map((c) => {
    const at = new Map(c.points.map((p) => [p.t, p]));
    return (key) => xs.map((t) => (at.has(t) ? at.get(t)[key] : null));
  });
  return { xs, columns };
}

function plot(container, opts, data) {
  const key = container.closest("[data-stage]").dataset.stage + "/" + container.className;
  if (state.charts[key]) state.charts[key].destroy();
  container.replaceChildren();
  const width = Math.max(360, container.clientWidth || 520);
  state.charts[key] = new uPlot({ width, height: 230, ...opts }, data, container);
}

function renderCharts(section, series) {
  const agreement = section.querySelector(".chart-agreement");
  const volume = section.querySelector(".chart-volume");
  const points = series.candidates.reduce((n, c) => n + c.points.length, 0);
  agreement.dataset.points = volume.dataset.points = points;
  if (!points) {
    for (const c of [agreement, volume]) c.replaceChildren(el("div", { class: "empty" }, "no comparisons yet"));
    return;
  }
  const { xs, columns } = aligned(series.candidates);
  // At least ten buckets wide, ending at the newest. From our own xs: for a lone point uPlot hands the
  // range function a span of years.
  const bucket = series.bucket_s, first = xs[0], last = xs[xs.length - 1];
  const x = { time: true, range: () => [Math.min(first, last - 10 * bucket) - bucket / 2, last + bucket / 2] };
  const pctAxis = { values: (u, ticks) => ticks.map((v) => (v * 100).toFixed(0) + "%") };
  const fmtPct = (u, v) => (v == null ? "–" : pct(v));

  const data = [xs], lines = [{}], bands = [];
  series.candidates.forEach((c, i) => {
    const color = COLORS[i % COLORS.length], col = columns[i];
    data.push(col("share"), col("high"), col("low"));
    const k = data.length - 3;
    lines.push({ label: c.candidate, stroke: color, width: 2, points: { show: true, size: 7 }, value: fmtPct },
      // Band edges keep their points: a band needs two buckets to fill, a lone bucket still shows its interval.
      { label: "95% high", stroke: color + "88", width: 1, dash: [4, 4], value: fmtPct, points: { show: true, size: 4 } },
      { label: "95% low", stroke: color + "88", width: 1, dash: [4, 4], value: fmtPct, points: { show: true, size: 4 } });
    bands.push({ series: [k + 1, k + 2], fill: color + "22" });
  });
  plot(agreement, { scales: { x, y: { range: [0, 1] } }, axes: [{}, pctAxis], series: lines, bands }, data);

  const vData = [xs], vLines = [{}];
  series.candidates.forEach((c, i) => {
    const color = COLORS[i % COLORS.length], col = columns[i];
    vData.push(col("n"));
    vLines.push({ label: c.candidate + " compared", stroke: color, width: 2, scale: "n", points: { show: true, size: 7 } });
    if (c.points.some((p) => p.cand_match_rate != null)) {
      vData.push(col("cand_match_rate"));
      vLines.push({ label: c.candidate + " match", stroke: color, dash: [6, 3], scale: "%", value: fmtPct, points: { show: true } });
    }
  });
  vData.push(columns[0]("prod_match_rate"));
  vLines.push({ label: "production match", stroke: "#1d2330", dash: [6, 3], scale: "%", value: fmtPct, points: { show: true, size: 6 } });
  plot(volume, {
    scales: { x, n: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] }, "%": { range: [0, 1] } },
    axes: [{}, { scale: "n" }, { scale: "%", side: 1, grid: { show: false }, ...pctAxis }],
    series: vLines,
  }, vData);
}

function render(ov) {
  document.getElementById("mode").textContent = ov.writable ? "promotions enabled" : "read-only";
  document.getElementById("mode").classList.toggle("rw", ov.writable);
  document.getElementById("auth").hidden = !ov.writable;
  document.getElementById("updated").textContent = "updated " + time(ov.generated_ms);
  const host = document.getElementById("stages");
  const shown = ov.stages.filter((st) => st.candidates.length);
  if (!shown.length) {
    host.replaceChildren(el("section", { class: "card" }, el("h2", {}, "No candidates in shadow"),
      el("p", { class: "muted" }, "Register one with `shadowline shadow register STAGE:NAME@VERSION` and start its mirror, runner and comparator.")));
  } else {
    // A stage is rebuilt only when its numbers changed: open details and chart hovers survive a poll.
    host.replaceChildren(...shown.map((st) => {
      const key = JSON.stringify([st, ov.writable]);
      const known = state.sections.get(st.stage);
      if (known && known.key === key) return known.node;
      const section = stageSection(st, ov.writable);
      state.sections.set(st.stage, { key, node: section });
      if (state.series[st.stage]) renderAfterLayout(() => renderCharts(section, state.series[st.stage]));
      if (state.disagreements[st.stage]) renderDisagreements(section, state.disagreements[st.stage]);
      return section;
    }));
  }
  activesTable(ov);
}

function renderAfterLayout(fn) {
  requestAnimationFrame(() => fn());
}

async function refreshDetails(stages) {
  await Promise.all(stages.map(async (stage) => {
    const [series, dis] = await Promise.all([
      api(`/api/stages/${stage}/series`), api(`/api/stages/${stage}/disagreements?limit=25`)]);
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const section = document.querySelector(`section.stage[data-stage="${stage}"]`);
    const fresh = section && !section.querySelector(".chart-agreement").dataset.points;
    if (section && (fresh || !same(state.series[stage], series))) renderCharts(section, series);
    if (section && (fresh || !same(state.disagreements[stage], dis))) renderDisagreements(section, dis);
    state.series[stage] = series;
    state.disagreements[stage] = dis;
  }));
}

let busy = false;
async function refresh(force) {
  if (busy) return;
  busy = true;
  try {
    const ov = await api("/api/overview");
    state.overview = ov;
    render(ov);
    const stages = ov.stages.filter((st) => st.candidates.length).map((st) => st.stage);
    if (force || Date.now() - state.detailAt >= DETAIL_MS) {
      state.detailAt = Date.now();
      await refreshDetails(stages);
    }
    document.body.dataset.ready = "true";
  } catch (e) {
    message("error", "cannot load the dashboard data: " + e.message);
  } finally {
    busy = false;
  }
}

document.getElementById("token").value = sessionStorage.getItem("shadowline-token") || "";
document.getElementById("token").addEventListener("input", (e) => sessionStorage.setItem("shadowline-token", e.target.value));
refresh(true);
setInterval(() => refresh(false), OVERVIEW_MS);
