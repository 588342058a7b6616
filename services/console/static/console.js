// fraudstream console: plain JavaScript, no framework, no build step.
// Every value that comes from a record is put on the page with textContent, never parsed as HTML,
// so nothing an alert, a model report or a KSQL row holds can become markup or script.
"use strict";

const MAX_ALERTS = 2000;   // alerts kept in the page
const MAX_ROWS = 200;      // rows drawn in the table
const HEALTH_EVERY_MS = 2000;

const state = {
  alerts: new Map(),       // REF -> alert, in arrival order
  selected: null,          // REF of the alert in the detail view
  versions: new Set(),
  verdicts: new Map(),     // alert ID -> verdict written from this page
  user: null,
  inFlight: false,
  healthTimer: null,
};

// ------------------------------------------------------------------ small DOM helpers
const $ = (id) => document.getElementById(id);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fmt(value, digits) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return digits === undefined ? String(value) : value.toFixed(digits);
  return String(value);
}

function fmtTime(ms) {
  if (typeof ms !== "number") return "";
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").slice(0, 23);
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.body !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  const response = await fetch(path, opts);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error : "HTTP " + response.status;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ tabs (WAI-ARIA pattern)
function setupTabs() {
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    onView(tab.id);
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (ev) => {
      let next = null;
      if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
      if (ev.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
      if (ev.key === "Home") next = tabs[0];
      if (ev.key === "End") next = tabs[tabs.length - 1];
      if (next) { ev.preventDefault(); next.focus(); select(next); }
    });
  });
}

function onView(tabId) {
  if (state.healthTimer) { clearInterval(state.healthTimer); state.healthTimer = null; }
  if (tabId === "tab-health") {
    loadHealth(); loadDrift();
    state.healthTimer = setInterval(loadHealth, HEALTH_EVERY_MS);
  } else if (tabId === "tab-models") {
    loadModels();
  } else if (tabId === "tab-ksql") {
    loadCatalog();
  }
}

// ------------------------------------------------------------------ live alerts
function connectAlerts() {
  const status = $("connection");
  const source = new EventSource("/api/alerts/stream");
  source.addEventListener("open", () => { status.textContent = "live"; status.className = "connection live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = "connection down"; });
  source.addEventListener("snapshot", (ev) => {
    const alerts = JSON.parse(ev.data);       // newest first
    state.alerts.clear();
    for (let i = alerts.length - 1; i >= 0; i--) addAlert(alerts[i]);
    renderAlerts(new Set());
  });
  source.addEventListener("alerts", (ev) => {
    const batch = JSON.parse(ev.data);        // oldest first
    const fresh = new Set();
    for (const alert of batch) { addAlert(alert); fresh.add(alert.REF); }
    renderAlerts(fresh);
  });
}

function addAlert(alert) {
  if (!alert || typeof alert.REF !== "string") return;
  state.alerts.delete(alert.REF);
  state.alerts.set(alert.REF, alert);
  while (state.alerts.size > MAX_ALERTS) state.alerts.delete(state.alerts.keys().next().value);
  if (typeof alert.MODEL_VERSION === "string" && !state.versions.has(alert.MODEL_VERSION)) {
    state.versions.add(alert.MODEL_VERSION);
    $("f-version").appendChild(el("option", alert.MODEL_VERSION, { value: alert.MODEL_VERSION }));
  }
}

function readFilters() {
  const num = (id) => { const v = $(id).value; return v === "" ? null : Number(v); };
  return {
    user: $("f-user").value.trim().toLowerCase(),
    amountMin: num("f-amount-min"),
    amountMax: num("f-amount-max"),
    version: $("f-version").value,
    score: num("f-score"),
  };
}

function matches(alert, f) {
  if (f.user && !String(alert.USER || "").toLowerCase().includes(f.user)) return false;
  if (f.amountMin !== null && !(alert.AMOUNT >= f.amountMin)) return false;
  if (f.amountMax !== null && !(alert.AMOUNT <= f.amountMax)) return false;
  if (f.version && alert.MODEL_VERSION !== f.version) return false;
  if (f.score !== null && !(alert.SCORE >= f.score)) return false;
  return true;
}

function renderAlerts(fresh) {
  const f = readFilters();
  const body = $("alerts-body");
  const rows = [];
  const all = Array.from(state.alerts.values());
  let shown = 0;
  for (let i = all.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
    if (matches(all[i], f)) rows.push(all[i]);
  }
  for (let i = all.length - 1; i >= 0; i--) if (matches(all[i], f)) shown++;
  clear(body);
  for (const alert of rows) body.appendChild(alertRow(alert, fresh.has(alert.REF)));
  $("alerts-count").textContent = shown + " of " + state.alerts.size + " alerts";
}

function alertRow(alert, fresh) {
  const tr = el("tr", null, { "data-ref": alert.REF, tabindex: "0", id: "alert-" + alert.REF });
  if (fresh) tr.className = "fresh";
  if (alert.REF === state.selected) tr.setAttribute("aria-selected", "true");
  const verdict = state.verdicts.get(alert.ID);
  const cells = [
    [fmtTime(alert.SCORED_AT)], [fmt(alert.ID)], [fmt(alert.USER)],
    [fmt(alert.AMOUNT, 2), "num"], [fmt(alert.SCORE, 4), "num"], [fmt(alert.THRESHOLD, 4), "num"],
    [fmt(alert.MODEL_VERSION)], [fmt(alert.CLASS)], [verdict ? verdictText(verdict) : ""],
  ];
  for (const [text, cls] of cells) {
    const td = el("td", text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  const open = () => showDetail(alert.REF);
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
  return tr;
}

function verdictText(verdict) {
  return verdict === "CONFIRMED_FRAUD" ? "confirmed fraud" : verdict === "FALSE_POSITIVE" ? "false positive" : String(verdict);
}

// ------------------------------------------------------------------ alert detail
async function showDetail(ref) {
  state.selected = ref;
  for (const tr of document.querySelectorAll("#alerts-body tr")) {
    tr.setAttribute("aria-selected", String(tr.getAttribute("data-ref") === ref));
  }
  const panel = $("detail");
  panel.hidden = false;
  $("feedback-status").textContent = "";
  let data;
  try {
    data = await api("/api/alerts/" + encodeURIComponent(ref));
  } catch (e) {
    $("detail-title").textContent = "Alert unavailable";
    $("feedback-status").textContent = e.message;
    return;
  }
  if (state.selected !== ref) return;
  const a = data.alert;
  $("detail-title").textContent = "Alert on transaction " + fmt(a.ID);
  const facts = $("detail-transaction");
  clear(facts);
  const fields = [["ID", a.ID], ["User", a.USER], ["Timestamp", a.TIMESTAMP], ["Amount", fmt(a.AMOUNT, 2)],
    ["Label (Class)", a.CLASS === null || a.CLASS === undefined ? "unlabelled" : a.CLASS],
    ["Model version", a.MODEL_VERSION], ["Scored at", fmtTime(a.SCORED_AT)], ["Record", a.REF]];
  for (const [k, v] of fields) { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", fmt(v))); }
  const ratio = typeof a.SCORE === "number" && a.THRESHOLD ? a.SCORE / a.THRESHOLD : null;
  $("detail-score").textContent = "score " + fmt(a.SCORE, 4) + " against threshold " + fmt(a.THRESHOLD, 4) +
    (ratio !== null ? " (" + ratio.toFixed(2) + "× the threshold)" : "");
  $("detail-scorefill").style.width = ratio === null ? "0" : Math.min(100, ratio * 50) + "%";
  renderExplanation(data);
  const written = data.verdict ? data.verdict.VERDICT : state.verdicts.get(a.ID);
  setVerdictButtons(false, written);
  panel.focus();
}

function renderExplanation(data) {
  const body = $("detail-explanation-body");
  clear(body);
  const note = $("detail-explanation-note");
  note.textContent = "";
  if (!data.explanation.length) {
    note.textContent = data.has_explanation ? "The scorer found no contributing features." :
      "This alert carries no explanation (scored before explanations were written).";
    return;
  }
  for (const row of data.explanation) {
    const tr = el("tr", null, { "data-feature": row.feature });
    tr.appendChild(el("th", row.feature, { scope: "row" }));
    const share = el("td", null);
    share.className = "num";
    const pct = typeof row.share === "number" ? row.share * 100 : null;
    const bar = el("span", null, { "aria-hidden": "true" });
    bar.className = "share";
    bar.style.width = pct === null ? "0" : Math.max(1, Math.min(100, pct)) + "px";
    share.appendChild(bar);
    share.appendChild(document.createTextNode(pct === null ? "" : pct.toFixed(1) + " %"));
    tr.appendChild(share);
    const value = el("td", fmt(row.value, 3));
    value.className = "num" + (row.outside ? " outside" : "");
    tr.appendChild(value);
    const range = row.low === null || row.low === undefined ? "unknown" :
      fmt(row.low, 3) + " … " + fmt(row.high, 3) + (row.outside ? " (outside)" : "");
    tr.appendChild(el("td", range));
    body.appendChild(tr);
  }
}

function setVerdictButtons(busy, written) {
  for (const id of ["btn-fraud", "btn-fp"]) $(id).disabled = busy || Boolean(written);
  if (written) $("feedback-status").textContent = "Verdict recorded: " + verdictText(written) + ".";
}

async function sendVerdict(verdict) {
  if (state.inFlight || !state.selected) return;   // a second click while one is in flight
  const ref = state.selected;
  const alert = state.alerts.get(ref);
  const analyst = state.user || $("feedback-analyst").value.trim();
  if (!analyst) {
    $("feedback-status").textContent = "Enter your name as the analyst first.";
    $("feedback-analyst").focus();
    return;
  }
  try { localStorage.setItem("fraudstream.analyst", analyst); } catch (e) { /* private mode */ }
  state.inFlight = true;
  setVerdictButtons(true, null);
  $("feedback-status").textContent = "Sending…";
  const body = { ref: ref, verdict: verdict, note: $("feedback-note").value, analyst: analyst, submission: randomId() };
  try {
    // the same submission id on a retry: the server writes it at most once
    let result = null;
    for (let attempt = 0; attempt < 3 && result === null; attempt++) {
      try { result = await api("/api/feedback", { body: body }); } catch (e) {
        if (e.status !== undefined && e.status < 500) throw e;
        if (attempt === 2) throw e;
      }
    }
    if (alert) state.verdicts.set(alert.ID, verdict);
    $("feedback-note").value = "";
    setVerdictButtons(false, verdict);
    renderAlerts(new Set());
  } catch (e) {
    $("feedback-status").textContent = "Not recorded: " + e.message;
    setVerdictButtons(false, null);
  } finally {
    state.inFlight = false;
  }
}

function setupDetail() {
  $("detail-close").addEventListener("click", closeDetail);
  $("detail").addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDetail(); });
  for (const id of ["btn-fraud", "btn-fp"]) {
    $(id).addEventListener("click", (ev) => sendVerdict(ev.currentTarget.getAttribute("data-verdict")));
  }
  try { $("feedback-analyst").value = localStorage.getItem("fraudstream.analyst") || ""; } catch (e) { /* ignore */ }
}

function closeDetail() {
  const ref = state.selected;
  state.selected = null;
  $("detail").hidden = true;
  const row = ref && document.getElementById("alert-" + ref);
  if (row) { row.setAttribute("aria-selected", "false"); row.focus(); }
}

// ------------------------------------------------------------------ health and drift
async function loadHealth() {
  let data;
  try { data = await api("/api/health"); } catch (e) { $("health-note").textContent = e.message; return; }
  const notes = [];
  if (data.error) notes.push(data.error);
  if (data.alerts_feed && data.alerts_feed.error) notes.push(data.alerts_feed.error);
  if (!data.sampled) notes.push("sampling…");
  $("health-note").textContent = notes.join(" · ");
  const body = $("health-body");
  clear(body);
  for (const s of data.stages) {
    const tr = el("tr", null, { "data-stage": s.stage });
    tr.appendChild(el("td", s.stage));
    tr.appendChild(el("td", s.name));
    tr.appendChild(el("td", s.topic));
    const rate = el("td", s.rate === null ? "" : s.rate.toFixed(1), { "data-rate": s.rate === null ? "" : String(s.rate) });
    rate.className = "num";
    tr.appendChild(rate);
    const lag = el("td", s.lag === null ? "" : String(s.lag));
    lag.className = "num";
    tr.appendChild(lag);
    const total = el("td", s.total === null ? "" : String(s.total));
    total.className = "num";
    tr.appendChild(total);
    tr.appendChild(el("td", s.state));
    body.appendChild(tr);
  }
}

async function loadDrift() {
  const note = $("drift-note");
  const body = $("drift-body");
  note.textContent = "reading the live stream…";
  let data;
  try { data = await api("/api/drift"); } catch (e) { note.textContent = e.message; return; }
  clear(body);
  note.textContent = data.note || "";
  $("drift-caption").textContent = data.version ?
    "PSI per feature, model " + data.version + ", " + (data.sample || 0) + " newest records" : "PSI per feature";
  for (const row of data.features || []) {
    const tr = el("tr");
    tr.appendChild(el("th", row.feature, { scope: "row" }));
    const psi = el("td", row.psi === null ? "" : row.psi.toFixed(3));
    psi.className = "num";
    tr.appendChild(psi);
    const flag = el("td", row.flagged ? "drifted" : "stable");
    flag.className = row.flagged ? "flag" : "okflag";
    tr.appendChild(flag);
    body.appendChild(tr);
  }
}

// ------------------------------------------------------------------ models and budget
async function loadModels() {
  let data;
  try { data = await api("/api/models"); } catch (e) { $("budget-status").textContent = e.message; return; }
  const body = $("models-body");
  clear(body);
  const select = $("budget-version");
  clear(select);
  for (const m of data.versions) {
    const tr = el("tr", null, { tabindex: "0", "data-version": m.version });
    const roles = [];
    if (m.latest) roles.push("LATEST");
    if (m.scoring) roles.push("scoring");
    const cells = [m.version, m.created_at, roles.join(", "), m.champion_model,
      fmt(m.roc_auc, 4), fmt(m.pr_auc, 4), fmt(m.threshold, 4),
      m.promotion ? m.promotion + (m.promotion_reason ? ": " + m.promotion_reason : "") : ""];
    cells.forEach((text, i) => {
      const td = el("td", text);
      if (i >= 4 && i <= 6) td.className = "num";
      tr.appendChild(td);
    });
    const open = () => showModel(m.version);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
    body.appendChild(tr);
    const option = el("option", m.version + (m.latest ? " (LATEST)" : ""), { value: m.version });
    if (m.latest) option.selected = true;
    select.appendChild(option);
  }
  $("budget-apply").disabled = !data.budget_available;
  if (!data.budget_available) $("budget-status").textContent = "Alert budgets are not available in this installation.";
}

async function showModel(version) {
  let data;
  try { data = await api("/api/models/" + encodeURIComponent(version)); } catch (e) { return; }
  $("model-detail").hidden = false;
  $("model-detail-title").textContent = "Version " + data.version;
  $("model-report").textContent = data.report || "(no report)";
  const plots = $("model-plots");
  clear(plots);
  for (const name of data.plots) {
    const img = el("img", null, {
      src: "/api/models/" + encodeURIComponent(version) + "/plots/" + encodeURIComponent(name),
      alt: name.replace(/\.png$/, "").replace(/[_-]/g, " ") + " of version " + version,
      loading: "lazy",
    });
    plots.appendChild(img);
  }
}

async function applyBudget(ev) {
  ev.preventDefault();
  const raw = $("budget-value").value;
  if (raw === "") { $("budget-status").textContent = "Enter the alerts per 10,000 first."; return; }
  const body = { version: $("budget-version").value, per_10k: Number(raw) };
  $("budget-apply").disabled = true;
  $("budget-status").textContent = "Applying…";
  try {
    const result = await api("/api/budget", { body: body });
    $("budget-status").textContent = "New " + result.summary +
      (result.latest ? " (LATEST, announced to the scorer)" : " (not LATEST: the scorer keeps its version)");
    loadModels();
  } catch (e) {
    $("budget-status").textContent = "Not applied: " + e.message;
  } finally {
    $("budget-apply").disabled = false;
  }
}

// ------------------------------------------------------------------ KSQL
async function loadCatalog() {
  let data;
  try { data = await api("/api/ksql/catalog"); } catch (e) { $("ksql-status").textContent = e.message; return; }
  const fill = (id, items, text) => {
    const list = $(id);
    clear(list);
    for (const item of items) list.appendChild(el("li", text(item)));
    if (!items.length) list.appendChild(el("li", "none"));
  };
  fill("ksql-streams", data.streams, (s) => s.name + " (" + s.value_format + ")");
  fill("ksql-tables", data.tables, (t) => t.name + " (" + t.value_format + ")");
  fill("ksql-queries", data.queries, (q) => q.id + " → " + q.sinks.join(", ") + " " + q.state);
}

async function runKsql(ev) {
  if (ev) ev.preventDefault();
  const button = $("ksql-run");
  if (button.disabled) return;
  button.disabled = true;
  $("ksql-status").textContent = "Running…";
  const out = $("ksql-results");
  clear(out);
  try {
    const data = await api("/api/ksql", { body: {
      sql: $("ksql-sql").value, max_rows: Number($("ksql-rows").value) || 100,
      seconds: Number($("ksql-seconds").value) || 5, earliest: $("ksql-earliest").checked,
    } });
    for (const result of data.results) out.appendChild(ksqlResult(result));
    $("ksql-status").textContent = data.results.length + " statement(s) run.";
    loadCatalog();
  } catch (e) {
    $("ksql-status").textContent = "Error: " + e.message;
  } finally {
    button.disabled = false;
  }
}

function ksqlResult(result) {
  const box = el("div", null, { "data-kind": result.kind });
  box.className = "result";
  box.appendChild(el("pre", result.sql));
  if (result.kind === "rows") {
    const table = el("table");
    table.className = "compact";
    table.appendChild(el("caption", result.rows.length + " rows, " + result.ended));
    const head = el("tr");
    for (const c of result.columns) head.appendChild(el("th", c, { scope: "col" }));
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    for (const row of result.rows) {
      const tr = el("tr");
      for (const cell of row) tr.appendChild(el("td", typeof cell === "object" && cell !== null ? JSON.stringify(cell) : fmt(cell)));
      body.appendChild(tr);
    }
    box.appendChild(table);
  } else {
    const p = el("p", result.message);
    if (result.kind === "error") p.className = "error";
    box.appendChild(p);
  }
  return box;
}

// ------------------------------------------------------------------ start
async function start() {
  setupTabs();
  setupDetail();
  $("filters").addEventListener("input", () => renderAlerts(new Set()));
  $("filters").addEventListener("reset", () => setTimeout(() => renderAlerts(new Set()), 0));
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("budget-form").addEventListener("submit", applyBudget);
  $("ksql-form").addEventListener("submit", runKsql);
  $("ksql-sql").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) runKsql(ev); });
  $("catalog-refresh").addEventListener("click", loadCatalog);
  try {
    const status = await api("/api/status");
    if (status.user) {
      state.user = status.user;
      $("feedback-analyst").value = status.user;
      $("feedback-analyst").readOnly = true;
    }
  } catch (e) { /* the stream below reports the connection */ }
  connectAlerts();
}

document.addEventListener("DOMContentLoaded", start);
