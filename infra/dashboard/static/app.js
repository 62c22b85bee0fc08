// The dashboard: hash routes over the engine's JSON API. No build step, no dependencies.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (t) => (t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, "Z") : "");
const sevRank = { critical: 4, high: 3, medium: 2, low: 1 };

const tokenInput = $("#token");
// The token lives for this tab's session only, unless the operator asks to remember it.
const rememberBox = $("#remember");
rememberBox.checked = localStorage.getItem("apiToken") !== null;
tokenInput.value = sessionStorage.getItem("apiToken") || localStorage.getItem("apiToken") || "";
const keepToken = () => {
  sessionStorage.setItem("apiToken", tokenInput.value);
  if (rememberBox.checked) localStorage.setItem("apiToken", tokenInput.value); else localStorage.removeItem("apiToken");
};
tokenInput.addEventListener("change", keepToken);
rememberBox.addEventListener("change", keepToken);

function headers() {
  const h = { "Content-Type": "application/json" };
  if (tokenInput.value) h.Authorization = "Bearer " + tokenInput.value;
  return h;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { headers: headers(), ...opts });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body;
}

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.style.display = "block";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.style.display = "none"), 4000);
}

const sev = (s) => (s ? `<span class="sev sev-${esc(s)}">${esc(s)}</span>` : "");

// ---- incidents list -------------------------------------------------------------------
const filters = { service: "", status: "", severity: "" };

async function incidentsPage() {
  const q = new URLSearchParams({ limit: "200" });
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  const data = await api("/api/v1/incidents?" + q);
  const list = (data.incidents || []).slice().sort((a, b) =>
    (a.status === "open") !== (b.status === "open") ? (a.status === "open" ? -1 : 1)
      : (sevRank[b.severity] - sevRank[a.severity]) || (new Date(b.last_seen) - new Date(a.last_seen)));
  $("#main").innerHTML = `
    <div class="filters">
      <input id="f-service" placeholder="service" value="${esc(filters.service)}">
      <select id="f-status"><option value="">any status</option><option>open</option><option>resolved</option></select>
      <select id="f-severity"><option value="">any severity</option><option>critical</option><option>high</option><option>medium</option><option>low</option></select>
      <span class="muted">${list.length} incidents, open first, by severity · refreshes every 5 s</span>
    </div>
    <table id="incidents"><thead><tr><th>Service</th><th>Severity</th><th>Status</th><th>Anomalies</th><th>First seen</th><th>Last seen</th><th>Resolved</th></tr></thead>
    <tbody>${list.map((i) => `<tr data-id="${esc(i.id)}" class="incident-row">
      <td><a href="#/incidents/${esc(i.id)}">${esc(i.service)}</a></td><td>${sev(i.severity)}</td>
      <td class="status-${esc(i.status)}">${esc(i.status)}${i.acknowledged_by ? ' <span class="muted">· acked by ' + esc(i.acknowledged_by) + "</span>" : ""}</td>
      <td>${esc(i.occurrence_count)}</td><td>${fmt(i.first_seen)}</td><td>${fmt(i.last_seen)}</td><td>${fmt(i.resolved_at)}</td></tr>`).join("")}
    </tbody></table>`;
  $("#f-status").value = filters.status;
  $("#f-severity").value = filters.severity;
  for (const k of ["service", "status", "severity"]) {
    $("#f-" + k).addEventListener("change", (e) => { filters[k] = e.target.value.trim(); route(); });
  }
}

// ---- one incident ---------------------------------------------------------------------
async function incidentPage(id) {
  const data = await api("/api/v1/incidents/" + encodeURIComponent(id));
  const inc = data.incident || data;
  const timeline = data.timeline || [];
  const first = new Date(inc.first_seen), end = inc.resolved_at ? new Date(inc.resolved_at) : new Date(inc.last_seen);
  const pad = Math.max(60 * 60 * 1000, (end - first) * 0.5);
  const from = new Date(first - pad), to = new Date(+end + pad);
  const maxSamples = 10000;
  const samples = await api(`/api/v1/services/${encodeURIComponent(inc.service)}/samples?limit=${maxSamples}&from=${from.toISOString().replace(/\.\d+Z$/, "Z")}&to=${to.toISOString().replace(/\.\d+Z$/, "Z")}`)
    .then((d) => d.samples || []).catch(() => []);
  const open = inc.status === "open";
  $("#main").innerHTML = `
    <div class="card">
      <h2>${esc(inc.service)} ${sev(inc.severity)} <span id="incident-status" class="status-${esc(inc.status)}">${esc(inc.status)}</span>
        ${inc.acknowledged_by ? `<span class="muted" id="acked">acknowledged by ${esc(inc.acknowledged_by)}</span>` : ""}</h2>
      <div class="facts">
        <div><span>Anomalies</span>${esc(inc.occurrence_count)}</div><div><span>First seen</span>${fmt(inc.first_seen)}</div>
        <div><span>Last seen</span>${fmt(inc.last_seen)}</div><div><span>Resolved</span>${fmt(inc.resolved_at) || "—"}</div>
        <div><span>Incident</span><code>${esc(inc.id)}</code></div>
      </div>
      <p class="actions">
        ${open && !inc.acknowledged_by ? '<button class="primary" id="ack">Acknowledge</button>' : ""}
        ${open ? '<button id="resolve">Resolve…</button>' : '<button id="reopen">Reopen</button>'}
        <button id="silence">Silence ${esc(inc.service)} for 1 h…</button>
      </p>
    </div>
    <div class="card chart" id="chart">${chart(samples, inc)}${samples.length >= maxSamples ? `<p class="muted" id="chart-cut">The first ${maxSamples} samples of this time are shown.</p>` : ""}</div>
    <div class="card"><h3>Timeline</h3><table class="timeline"><tbody>
      ${foldTimeline(timeline).map(timelineRow).join("")}
    </tbody></table></div>`;
  const who = () => prompt("Your name", localStorage.getItem("operator") || "") || "";
  const act = async (path, body, done) => {
    try {
      await api(path, { method: "POST", body: JSON.stringify(body) });
      toast(done);
      route();
    } catch (e) { toast("Failed: " + e.message); }
  };
  $("#ack")?.addEventListener("click", () => { const by = who(); if (by) { localStorage.setItem("operator", by); act(`/api/v1/incidents/${id}/acknowledge`, { by }, "Acknowledged"); } });
  $("#resolve")?.addEventListener("click", () => { const by = who(); const reason = by && prompt("Reason"); if (by && reason) act(`/api/v1/incidents/${id}/resolve`, { by, reason }, "Resolved"); });
  $("#reopen")?.addEventListener("click", () => { const by = who(); if (by) act(`/api/v1/incidents/${id}/reopen`, { by }, "Reopened"); });
  $("#silence")?.addEventListener("click", () => {
    const by = who(); const reason = by && prompt("Reason for the silence");
    if (by && reason) act("/api/v1/silences", { service: inc.service, start: new Date().toISOString(), end: new Date(Date.now() + 3600e3).toISOString(), reason, author: by }, "Silenced for an hour");
  });
}

// foldTimeline folds each run of anomaly_recorded entries into one group, so that the
// changes (opened, escalated, resolved...) are not buried under every anomaly.
function foldTimeline(entries) {
  const out = [];
  for (const e of entries) {
    const last = out[out.length - 1];
    if (e.event === "anomaly_recorded" && last && last.run) last.run.push(e);
    else if (e.event === "anomaly_recorded") out.push({ run: [e] });
    else out.push(e);
  }
  return out;
}

// timelineRow renders one entry, or a run of anomalies as a summary that opens to show them.
function timelineRow(item) {
  if (!item.run) return `<tr><td>${fmt(item.occurred_at)}</td><td><b>${esc(item.event)}</b></td><td>${describe(item)}</td></tr>`;
  const run = item.run, first = run[0], last = run[run.length - 1];
  const scores = run.map((e) => +(e.details || {}).score).filter((v) => v > 0);
  const top = {};
  for (const e of run) for (const c of (e.details || {}).explanation || []) top[c.metric] = (top[c.metric] || 0) + c.share;
  const drivers = Object.entries(top).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([m]) => esc(m)).join(", ");
  const summary = `${run.length} anomal${run.length === 1 ? "y" : "ies"}, ${fmt(first.occurred_at)} – ${fmt(last.occurred_at)}` +
    (scores.length ? ` · score ${Math.min(...scores).toFixed(3)}–${Math.max(...scores).toFixed(3)}` : "") + (drivers ? ` · driven by ${drivers}` : "");
  return `<tr class="anomaly-run"><td>${fmt(first.occurred_at)}</td><td><b>anomalies</b></td><td><details><summary>${summary}</summary>
    <table>${run.map((e) => `<tr><td>${fmt(e.occurred_at)}</td><td>${describe(e)}</td></tr>`).join("")}</table></details></td></tr>`;
}

// num writes a chart label without scientific notation.
const num = (v) => new Intl.NumberFormat("en", { maximumSignificantDigits: 3 }).format(v);

function describe(e) {
  const d = e.details || {};
  const parts = [];
  if (d.score) parts.push(`score ${(+d.score).toFixed(3)} / threshold ${(+d.threshold).toFixed(3)}`);
  if (d.from || d.to) parts.push(`${esc(d.from || "")} → ${esc(d.to || "")}`);
  if (d.rule) parts.push("rule " + esc(d.rule));
  if (d.explanation) parts.push("driven by " + d.explanation.map((c) => `${esc(c.metric)} ${Math.round(c.share * 100)}%`).join(", "));
  if (d.by) parts.push("by " + esc(d.by));
  if (d.receiver) parts.push(`${esc(d.receiver)} (${esc(d.attempts)} attempt${d.attempts === 1 ? "" : "s"})${d.error ? ": " + esc(d.error) : ""}`);
  if (d.hook) parts.push("hook " + esc(d.hook) + (d.dry_run ? " (dry run)" : "") + (d.status ? " " + esc(d.status) : "") + (d.error ? ": " + esc(d.error) : ""));
  if (d.reason) parts.push(esc(d.reason));
  return parts.join(" · ");
}

// chart draws one small panel per metric and one for the anomaly score, with the threshold
// and the anomalous points marked and the incident's span shaded.
function chart(samples, inc) {
  if (!samples.length) return '<p class="muted">No samples stored for this time.</p>';
  const W = 1100, H = 110, L = 60, R = 10;
  const t0 = new Date(samples[0].at), t1 = new Date(samples[samples.length - 1].at);
  const x = (t) => L + ((new Date(t) - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const spanX0 = x(inc.first_seen), spanX1 = x(inc.resolved_at || inc.last_seen);
  const names = Object.keys(samples[0].metrics).sort();
  const panel = (title, values, opts = {}) => {
    const vs = values.filter((v) => v != null);
    if (!vs.length) return "";
    let lo = Math.min(...vs, opts.threshold ?? Infinity), hi = Math.max(...vs, opts.threshold ?? -Infinity);
    if (hi === lo) { hi += 1; lo -= 1; }
    const y = (v) => 8 + (1 - (v - lo) / (hi - lo)) * (H - 20);
    const pts = samples.map((s, i) => (values[i] == null ? null : `${x(s.at).toFixed(1)},${y(values[i]).toFixed(1)}`)).filter(Boolean).join(" ");
    const marks = samples.map((s, i) => (s.anomalous && values[i] != null ? `<circle class="anomalous-point" cx="${x(s.at).toFixed(1)}" cy="${y(values[i]).toFixed(1)}" r="2.5" fill="#d92d20"/>` : "")).join("");
    const thr = opts.threshold != null ? `<line class="threshold" x1="${L}" x2="${W - R}" y1="${y(opts.threshold)}" y2="${y(opts.threshold)}" stroke="#d92d20" stroke-dasharray="4 3"/><text x="${W - R}" y="${y(opts.threshold) - 3}" text-anchor="end" font-size="10" fill="#d92d20">threshold ${opts.threshold.toFixed(3)}</text>` : "";
    return `<h3>${esc(title)}</h3><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">
      <rect x="${spanX0}" y="0" width="${Math.max(1, spanX1 - spanX0)}" height="${H}" fill="#fee4e2" opacity=".6"/>
      <text x="4" y="14" font-size="10" fill="#667085">${num(hi)}</text><text x="4" y="${H - 6}" font-size="10" fill="#667085">${num(lo)}</text>
      <polyline fill="none" stroke="#1d2939" stroke-width="1.3" points="${pts}"/>${thr}${marks}</svg>`;
  };
  const scores = samples.map((s) => (s.score == null ? null : s.score));
  const thr = samples.map((s) => s.threshold).filter((v) => v != null);
  // A time axis under the panels: five ticks, in UTC.
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => new Date(+t0 + f * (t1 - t0)));
  const axis = `<svg class="time-axis" viewBox="0 0 ${W} 18" role="img" aria-label="time (UTC)">${ticks.map((t, i) =>
    `<text x="${x(t).toFixed(1)}" y="12" font-size="10" fill="#667085" text-anchor="${i === 0 ? "start" : i === 4 ? "end" : "middle"}">${esc(fmt(t.toISOString()).slice(5, 16))}</text>`).join("")}</svg>`;
  return `<p class="muted">${fmt(t0)} – ${fmt(t1)} (UTC); the incident is shaded, anomalous samples are red.</p>` +
    panel("anomaly score", scores, { threshold: thr.length ? thr[thr.length - 1] : undefined }) +
    names.map((n) => panel(n, samples.map((s) => s.metrics[n]))).join("") + axis;
}

// ---- services -------------------------------------------------------------------------
function sparkline(scores) {
  if (!scores || !scores.length) return '<span class="muted">—</span>';
  const W = 140, H = 28, lo = Math.min(...scores), hi = Math.max(...scores, lo + 1e-9);
  const pts = scores.map((v, i) => `${(i / Math.max(1, scores.length - 1)) * W},${H - 2 - ((v - lo) / (hi - lo)) * (H - 4)}`).join(" ");
  return `<svg class="sparkline" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><polyline fill="none" stroke="#475467" points="${pts}"/></svg>`;
}

// One page of services in name order (the API's page size), with a link to the next page
// when more follow.
async function servicesPage(cursor) {
  const data = await api("/api/v1/services" + (cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""));
  const more = data.next_cursor
    ? `<p><a id="services-next" href="#/services/after/${encodeURIComponent(data.next_cursor)}">More services, after ${esc(data.next_cursor)} →</a></p>`
    : "";
  const first = cursor ? `<p><a href="#/services">← First services</a></p>` : "";
  $("#main").innerHTML = `<table id="services"><thead><tr><th>Service</th><th>State</th><th>Model</th><th>Last sample</th><th>Recent score</th></tr></thead><tbody>
    ${(data.services || []).map((s) => `<tr><td>${esc(s.service)}</td>
      <td><span class="state state-${esc(s.state)}">${esc(s.state.replace("_", " "))}</span>${s.silenced_until ? ` <span class="muted">until ${fmt(s.silenced_until)}</span>` : ""}${s.incident_status === "open" ? ` <a href="#/incidents/${esc(s.incident_id)}">${sev(s.severity)}</a>` : ""}</td>
      <td>${s.model_version ? `v${esc(s.model_version)}, trained ${fmt(s.model_trained_at)}, threshold ${(+s.threshold).toFixed(3)}` : "warming up"}</td>
      <td>${fmt(s.last_sample_at)}</td><td>${sparkline(s.recent_scores)}</td></tr>`).join("")}
  </tbody></table>${first}${more}`;
}

// ---- routing --------------------------------------------------------------------------
async function route() {
  const h = location.hash || "#/";
  document.querySelectorAll("nav a").forEach((a) => a.classList.remove("active"));
  try {
    if (h.startsWith("#/incidents/")) await incidentPage(decodeURIComponent(h.slice("#/incidents/".length)));
    else if (h.startsWith("#/services")) {
      $("#nav-services").classList.add("active");
      await servicesPage(h.startsWith("#/services/after/") ? decodeURIComponent(h.slice("#/services/after/".length)) : "");
    }
    else { $("#nav-incidents").classList.add("active"); await incidentsPage(); }
  } catch (e) {
    $("#main").innerHTML = `<p class="muted">Could not load: ${esc(e.message)}</p>`;
  }
}

window.addEventListener("hashchange", route);
setInterval(() => { if (!location.hash.startsWith("#/incidents/") && document.activeElement?.tagName !== "INPUT") route(); }, 5000);
route();
