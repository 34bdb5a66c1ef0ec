// The dumpsafe dashboard: plain JavaScript, no library, no build step.
// Every page calls the REST API (/v1/...) with the token held in sessionStorage, sent only
// in the Authorization header: the API decides what this token may see and do, and a
// refused action shows the API's own sentence.
"use strict";

const KEY = "dumpsafe-token";
const READ = "backups:read", CREATE = "backups:create", RESTORE = "backups:restore", DELETE = "backups:delete";
let me = null; // the caller (GET /v1/whoami)
let bringBack = {}; // the backup page's "bring back one table" choice (issue 19)

const $ = (sel) => document.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || `HTTP ${r.status}`);
  return data;
}

// ---- formatting --------------------------------------------------------------------------------
function size(n) {
  if (n == null) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i ? n.toFixed(1) + " " + u[i] : n + " B";
}
function dur(s) {
  if (s == null) return "-";
  s = Math.round(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const parts = [[d, "d"], [h, "h"], [m, "m"]].filter(([v]) => v).map(([v, u]) => v + u);
  return parts.length ? parts.slice(0, 2).join(" ") : s + "s";
}
const secs = (s) => (s == null ? "-" : s < 120 ? Number(s).toFixed(1) + "s" : dur(s));
const when = (t) => (t ? esc(t.replace("T", " ").slice(0, 16)) + " UTC" : "-");

function stateOf(row) {
  // red: max_age breached, or the last attempt failed; amber: no recent passed drill or a failed drill
  const failedLast = row.last_failure_at && (!row.last_success_at || row.last_failure_at > row.last_success_at);
  if (row.breached || failedLast) return "red";
  if (row.drill_overdue || row.last_drill_result === "failed" || !row.last_success_at) return "amber";
  return "green";
}

// ---- pages ---------------------------------------------------------------------------------------
async function overview(page) {
  const [rows, backups] = await Promise.all([api("GET", "/v1/status"), api("GET", "/v1/backups")]);
  const agg = {};
  for (const b of backups) {
    const k = b.tenant + "/" + b.database;
    agg[k] = agg[k] || { n: 0, bytes: 0 };
    agg[k].n++; agg[k].bytes += b.size_bytes;
  }
  const tr = rows.map((r) => {
    const st = stateOf(r), a = agg[r.tenant + "/" + r.database] || { n: 0, bytes: 0 };
    return `<tr class="row-${st}" data-tenant="${esc(r.tenant)}" data-database="${esc(r.database || "")}">
      <td><span class="state ${st}" title="${st}"></span>${st}</td>
      <td>${esc(r.tenant)}</td><td>${esc(r.database || "-")}</td>
      <td>${r.last_success_at ? when(r.last_success_at) + `<br><span class="muted">${dur(r.last_success_age_s)} ago` + (r.max_age_s != null ? ` (max_age ${dur(r.max_age_s)})` : "") + "</span>" : "never"}</td>
      <td>${r.last_failure_at ? when(r.last_failure_at) + `<br><span class="error">${esc(r.last_failure_error)}</span>` : "-"}</td>
      <td>${r.last_drill_at ? `${esc(r.last_drill_result)} ${when(r.last_drill_at)}<br><span class="muted">RTO ${secs(r.last_drill_rto_s)}</span>` : "-"}</td>
      <td>${r.last_restorable_at ? dur(r.last_restorable_age_s) + " ago" : "never"}${r.drill_overdue ? ' <span class="error">overdue</span>' : ""}</td>
      <td>${when(r.next_run_at)}</td><td class="count">${a.n}</td><td>${size(a.bytes)}</td></tr>`;
  });
  page.innerHTML = `<h1>Overview</h1>
    <table id="overview"><thead><tr><th>State</th><th>Tenant</th><th>Database</th><th>Last success</th><th>Last failure</th>
    <th>Last drill</th><th>Verified restorable</th><th>Next run</th><th>Backups</th><th>Total size</th></tr></thead>
    <tbody>${tr.join("") || '<tr><td colspan="10">no tenants</td></tr>'}</tbody></table>`;
}

async function backupsPage(page, params) {
  const q = new URLSearchParams();
  for (const k of ["tenant", "database", "store"]) if (params.get(k)) q.set(k, params.get(k));
  let list = await api("GET", "/v1/backups" + (q.toString() ? "?" + q : ""));
  const label = params.get("label");
  if (label) list = list.filter((b) => (b.label || "").includes(label));
  const v = (b) => (b.last_verification ? `${b.last_verification.result} ${b.last_verification.kind}` : "never");
  page.innerHTML = `<h1>Backups</h1>
    <form class="filters" id="filters">
      ${["tenant", "database", "store", "label"].map((k) => `<input name="${k}" placeholder="${k}" value="${esc(params.get(k) || "")}">`).join("")}
      <button type="submit">Filter</button></form>
    <table id="backups"><thead><tr><th>ID</th><th>Tenant/database</th><th>Created</th><th>Size</th><th>SHA-256</th>
    <th>Verification</th><th>Pinned</th><th>Store</th><th>Label</th></tr></thead><tbody>
    ${list.map((b) => `<tr><td><a class="backup-link" href="#/backup/${encodeURIComponent(b.id)}">${esc(b.id)}</a></td>
      <td>${esc(b.tenant)}/${esc(b.database)}</td><td>${when(b.created_at)}</td><td>${size(b.size_bytes)}</td>
      <td><code>${esc(b.sha256.slice(0, 12))}</code></td><td>${esc(v(b))}</td><td>${b.pinned ? "yes" : ""}</td>
      <td>${esc(b.store)}${b.copies && b.copies.length ? " + " + esc(b.copies.join(", ")) : ""}</td><td>${esc(b.label || "")}</td></tr>`).join("")
      || '<tr><td colspan="9">no backups</td></tr>'}</tbody></table>`;
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new URLSearchParams(new FormData(e.target));
    for (const [k, val] of [...f]) if (!val) f.delete(k);
    location.hash = "#/backups" + (f.toString() ? "?" + f : "");
  });
}

function historyRows(events) {
  return events.map((e) => `<tr class="event event-${esc(e.kind)}"><td>${when(e.at)}</td><td>${esc(e.kind)}</td>
    <td class="${e.outcome === "passed" || e.outcome === "ok" ? "ok" : "error"}">${esc(e.outcome)}</td>
    <td>${secs(e.rto_s)}</td><td>${esc(e.actor)}</td><td>${esc(e.detail || "")}</td></tr>`).join("");
}

async function backupPage(page, id) {
  const [b, events] = await Promise.all([api("GET", "/v1/backups/" + encodeURIComponent(id)),
    api("GET", "/v1/backups/" + encodeURIComponent(id) + "/history")]);
  const can = me.can, acts = [];
  if (can[CREATE]) {
    acts.push('<button id="act-verify">Verify</button>', '<button id="act-drill">Restore drill</button>');
    acts.push(b.pinned ? '<button id="act-unpin">Unpin</button>' : '<button id="act-pin">Pin</button>');
    const others = me.stores.filter((s) => s !== b.store && !(b.copies || []).includes(s));
    if (others.length) acts.push(`<fieldset><select id="copy-to">${others.map((s) => `<option>${esc(s)}</option>`).join("")}</select>
      <button id="act-copy">Copy</button></fieldset>`);
  }
  if (can[RESTORE]) {
    acts.push('<button id="act-dryrun">Restore dry run</button>');
    acts.push(`<fieldset><label>Type <code>${esc(b.database)}</code> to restore into it:
      <input id="confirm-db" autocomplete="off" size="16"></label> <button id="act-restore">Restore</button></fieldset>`);
  }
  if (can[RESTORE] && Object.keys(b.tables || {}).length) { // issue 19: one table back beside the live data
    const today = new Date().toISOString().slice(0, 10).replaceAll("-", "");
    const keep = bringBack.id === b.id ? bringBack : { table: null, schema: "restored_" + today }; // kept across the reload after an action
    acts.push(`<fieldset id="bring-back"><label>Bring back <select id="sel-table">${Object.keys(b.tables).sort()
      .map((t) => `<option${t === keep.table ? " selected" : ""}>${esc(t)}</option>`).join("")}</select></label>
      <label>into new schema <input id="sel-schema" autocomplete="off" size="18" value="${esc(keep.schema)}"></label>
      <button id="act-sel-plan">Preview</button> <button id="act-sel-restore">Restore table</button></fieldset>`);
  }
  if (can[DELETE]) acts.push(`<fieldset><label>Type <code>delete</code>: <input id="confirm-delete" autocomplete="off" size="7"></label>
    <button id="act-delete">Delete</button></fieldset>`);
  const v = b.last_verification;
  page.innerHTML = `<h1>Backup <code id="backup-id">${esc(b.id)}</code></h1>
    <dl class="kv"><dt>Tenant / database</dt><dd>${esc(b.tenant)} / ${esc(b.database)}</dd>
    <dt>Created</dt><dd>${when(b.created_at)} (took ${secs(b.duration_s)})</dd>
    <dt>Server</dt><dd>PostgreSQL ${esc(b.server_version)} (pg_dump ${esc(b.client_version || "?")})</dd>
    <dt>Store</dt><dd>${esc(b.store)} ${esc(b.location)}${b.copies && b.copies.length ? "; copies in " + esc(b.copies.join(", ")) : ""}</dd>
    <dt>Size</dt><dd>${size(b.size_bytes)} (${esc(b.compression)}${b.encryption ? ", " + esc(b.encryption) : ", not encrypted"})</dd>
    <dt>SHA-256</dt><dd><code>${esc(b.sha256)}</code></dd><dt>Label</dt><dd>${esc(b.label || "-")}</dd>
    <dt>Pinned</dt><dd id="pinned">${b.pinned ? "yes" : "no"}</dd>
    <dt>Last verification</dt><dd id="last-verification">${v ? `${esc(v.result)} (${esc(v.kind)}) ${when(v.at)}: ${esc(v.detail)}` : "never"}</dd></dl>
    <div class="actions" id="actions">${acts.join("") || '<span class="muted" id="no-actions">this token may only read</span>'}</div>
    <p id="action-result" role="status"></p><pre id="action-output" hidden></pre>
    <h2>Verification history</h2>
    <table id="history"><thead><tr><th>Time</th><th>Kind</th><th>Outcome</th><th>RTO</th><th>Actor</th><th>Detail</th></tr></thead>
    <tbody>${historyRows(events) || '<tr><td colspan="6">none yet</td></tr>'}</tbody></table>
    <h2>Objects</h2><table id="objects"><thead><tr><th>Role</th><th>Key</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>
    ${(b.objects || []).map((o) => `<tr><td>${esc(o.role)}</td><td><code>${esc(o.key)}</code></td><td>${size(o.size_bytes)}</td><td><code>${esc(o.sha256.slice(0, 16))}</code></td></tr>`).join("")}</tbody></table>
    <h2>Tables (rows at backup time)</h2><table id="tables"><thead><tr><th>Table</th><th>Rows</th></tr></thead><tbody>
    ${Object.entries(b.tables || {}).sort().map(([t, n]) => `<tr><td>${esc(t)}</td><td>${n}</td></tr>`).join("")}</tbody></table>`;
  const path = "/v1/backups/" + encodeURIComponent(b.id);
  const act = (sel, fn) => { const el = $(sel); if (el) el.addEventListener("click", () => run(el, fn)); };
  act("#act-verify", () => api("POST", path + "/verify", { drill: false }).then(() => "verification done"));
  act("#act-drill", () => api("POST", path + "/verify", { drill: true }).then((r) => "drill " + r.last_verification.result + ": " + r.last_verification.detail));
  act("#act-pin", () => api("POST", path + "/pin").then(() => "pinned"));
  act("#act-unpin", () => api("POST", path + "/unpin").then(() => "unpinned"));
  act("#act-copy", () => api("POST", path + "/copy", { to: $("#copy-to").value }).then((r) => "copied to " + r.store));
  act("#act-dryrun", () => api("POST", path + "/restore", { dry_run: true }).then((r) => { show(r); return "dry run: nothing was changed"; }));
  act("#act-restore", () => {
    if ($("#confirm-db").value !== b.database) {
      return Promise.reject(new ApiError(0, `type the database name '${b.database}' to confirm the restore; nothing was restored`));
    }
    return api("POST", path + "/restore", { database: b.database }).then((r) => { show(r); return "restored into " + b.database; });
  });
  const sel = () => {
    bringBack = { id: b.id, table: $("#sel-table").value, schema: $("#sel-schema").value };
    return { tables: [bringBack.table], into_schema: bringBack.schema };
  };
  act("#act-sel-plan", () => {
    const want = sel(), q = new URLSearchParams({ tables: want.tables[0], into_schema: want.into_schema });
    return api("GET", path + "/restore-plan?" + q).then((r) => { show(r); return "would create: " + r.would_create.join(", "); });
  });
  act("#act-sel-restore", () => api("POST", path + "/restore", sel()).then((r) => {
    show(r);
    return `restored ${Object.keys(r.tables).join(", ")} into schema ${r.into_schema}` + (r.left_out.length ? ` (left out: ${r.left_out.join("; ")})` : "");
  }));
  act("#act-delete", () => {
    if ($("#confirm-delete").value !== "delete") return Promise.reject(new ApiError(0, "type 'delete' to confirm; nothing was deleted"));
    return api("DELETE", path).then(() => { location.hash = "#/backups"; return "deleted"; });
  });
}

function show(obj) {
  const out = $("#action-output");
  out.textContent = JSON.stringify(obj, null, 2);
  out.hidden = false;
}

async function run(button, fn) {
  const res = $("#action-result");
  res.className = "";
  res.textContent = button.textContent + "…";
  document.querySelectorAll("#actions button").forEach((b) => (b.disabled = true));
  try {
    const msg = await fn();
    if (location.hash.startsWith("#/backup/")) await route(); // reload the record and its history
    const r2 = $("#action-result");
    if (r2) { r2.className = "ok"; r2.textContent = msg; }
  } catch (e) {
    const r2 = $("#action-result");
    if (r2) { r2.className = "error"; r2.textContent = e.message; }
    if (!(e instanceof ApiError)) throw e;
  } finally {
    document.querySelectorAll("#actions button").forEach((b) => (b.disabled = false));
  }
}

async function chartsPage(page) {
  const charts = await api("GET", "/v1/charts");
  page.innerHTML = "<h1>Charts</h1>" + (charts.map((c) => `<h2>${esc(c.tenant)}/${esc(c.database)}</h2>
    <div class="charts">${c.size}${c.duration}${c.rto}</div>`).join("") || "<p>no databases</p>");
}

async function auditPage(page) {
  const data = await api("GET", "/v1/audit?limit=200");
  page.innerHTML = `<h1>Audit log</h1><p class="muted">${data.total} lines; newest first</p>
    <table id="audit"><thead><tr><th>Time</th><th>Actor</th><th>Action</th><th>Subject</th><th>Outcome</th><th>Error</th></tr></thead><tbody>
    ${data.entries.map((e) => `<tr><td>${when(e.time)}</td><td>${esc(e.actor)}</td><td>${esc(e.action)}</td>
      <td>${esc(e.backup_id || e.tenant || "")}</td><td>${esc(e.outcome)}</td><td>${esc(e.error || "")}</td></tr>`).join("")}</tbody></table>`;
}

async function reportPage(page) {
  page.innerHTML = `<h1>Evidence report</h1><p>Last 90 days, for the tenants this token sees: schedule against runs, gaps,
    drills and RTO, integrity, encryption, copies and an audit excerpt.</p>
    <button id="open-report">Open the HTML report</button> <button id="save-json">Download JSON</button>`;
  const open = async (fmt, type, name) => {
    const r = await fetch("/v1/report?format=" + fmt, { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
    const url = URL.createObjectURL(new Blob([await r.text()], { type }));
    const a = document.createElement("a");
    a.href = url; a.download = name; a.click();
  };
  $("#open-report").addEventListener("click", () => open("html", "text/html", "dumpsafe-report.html"));
  $("#save-json").addEventListener("click", () => open("json", "application/json", "dumpsafe-report.json"));
}

// ---- routing and sign-in ---------------------------------------------------------------------
async function route() {
  const page = $("#page");
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  try {
    if (path.startsWith("/backup/")) await backupPage(page, decodeURIComponent(path.slice(8)));
    else if (path === "/backups") await backupsPage(page, params);
    else if (path === "/charts") await chartsPage(page);
    else if (path === "/audit") await auditPage(page);
    else if (path === "/report") await reportPage(page);
    else await overview(page);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut(e.message);
    page.innerHTML = `<p class="error" id="page-error">${esc(e.message)}</p>`;
  }
}

async function signIn() {
  try {
    me = await api("GET", "/v1/whoami");
  } catch (e) {
    sessionStorage.removeItem(KEY);
    return signOut(e.message);
  }
  $("#signin").hidden = true;
  $("#nav").hidden = false;
  $("#page").hidden = false;
  $("#nav-audit").hidden = !me.admin;
  $("#who").textContent = (me.admin ? "admin" : "tenant " + me.tenant) + " · " + (me.can[CREATE] || me.can[RESTORE] || me.can[DELETE] ? "read/write" : "read-only");
  await route();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  $("#nav").hidden = true;
  $("#page").hidden = true;
  $("#page").innerHTML = "";
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("#token").value.trim());
    $("#token").value = "";
    signIn();
  });
  $("#signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => me && route());
  if (sessionStorage.getItem(KEY)) signIn(); else signOut();
});
