// The admin page (static/admin.html, also at /admin): poll GET /admin/stats, keep a short history,
// draw it; list every open stream (GET /admin/connections) with a button that ends it (DELETE), and
// flip the runtime flags (GET/PUT /admin/flags). Both actions ask window.confirm() first.
// Every value reaches the page through textContent; nothing from the server becomes markup.

const POLL_MS = 2000;
const KEEP = 180; // points: six minutes at one poll every 2 s
const $ = (id) => document.getElementById(id);

const history = []; // {t, connections, users, inRate, outRate}
let previous = null;
let token = sessionStorage.getItem("cg-admin-token");

async function devToken() {
  const resp = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub: "admin-console", permissions: ["admin:sse"], ttl: 3600 }),
  });
  if (!resp.ok) return null; // not AUTH_MODE=dev: ask for a token instead
  return (await resp.json()).token;
}

async function ensureToken() {
  if (token) return token;
  token = await devToken();
  if (token) sessionStorage.setItem("cg-admin-token", token);
  else $("login").hidden = false;
  return token;
}

function delivered(stats) {
  return Object.values(stats.events_delivered || {}).reduce((a, b) => a + b, 0);
}

function record(stats) {
  const t = stats.ts;
  let inRate = 0;
  let outRate = 0;
  if (previous && t > previous.ts) {
    const dt = t - previous.ts;
    inRate = Math.max(0, (stats.events_published - previous.events_published) / dt);
    outRate = Math.max(0, (delivered(stats) - delivered(previous)) / dt);
  }
  previous = stats;
  history.push({ t, connections: stats.connections, users: stats.users, inRate, outRate });
  while (history.length > KEEP) history.shift();
  return { inRate, outRate };
}

function fmt(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? `${fmt(s * 1000, 1)} ms` : `${fmt(s, 2)} s`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${fmt(n, 1)} ${units[i]}`;
}

function fillTable(table, rows) {
  table.replaceChildren(...rows.map(([name, value, cls]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    const b = document.createElement("td");
    a.textContent = name;
    b.textContent = value;
    if (cls) b.className = cls;
    tr.append(a, b);
    return tr;
  }));
}

function legend(el, series) {
  el.replaceChildren(...series.map((s) => {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    span.append(swatch, document.createTextNode(s.label));
    return span;
  }));
}

// A line chart on a canvas: time on x, a zero-based y axis with a few gridlines.
function drawChart(canvas, series) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 48, right = 8, top = 8, bottom = 20;
  const points = series.flatMap((s) => s.points);
  if (points.length < 2) return;
  const t0 = Math.min(...points.map((p) => p[0]));
  const t1 = Math.max(...points.map((p) => p[0]));
  const top0 = Math.max(1, ...points.map((p) => p[1]));
  const step = niceStep(top0 / 4);
  const ymax = Math.ceil(top0 / step) * step;
  const x = (t) => left + ((t - t0) / Math.max(1e-9, t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - v / ymax) * (height - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#616061";
  ctx.strokeStyle = "#eee";
  ctx.lineWidth = 1;
  for (let v = 0; v <= ymax + 1e-9; v += step) {
    ctx.beginPath();
    ctx.moveTo(left, y(v));
    ctx.lineTo(width - right, y(v));
    ctx.stroke();
    ctx.fillText(fmt(v, step < 1 ? 1 : 0), 4, y(v) + 4);
  }
  ctx.fillText(`${Math.round(t1 - t0)} s`, width - right - 30, height - 4);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function render(stats, rates) {
  $("t-connections").textContent = fmt(stats.connections);
  $("t-users").textContent = fmt(stats.users);
  $("t-workers").textContent = fmt(stats.workers);
  $("t-in").textContent = fmt(rates.inRate, 1);
  $("t-out").textContent = fmt(rates.outRate, 1);
  $("t-p50").textContent = seconds(stats.broadcast_latency_seconds.p50);
  $("t-p99").textContent = seconds(stats.broadcast_latency_seconds.p99);
  const up = stats.bus.reader_up === 1;
  $("t-reader").textContent = up ? "up" : "DOWN";
  $("t-reader").className = up ? "" : "down";

  const connections = [
    { label: "streams", color: "#1164a3", points: history.map((h) => [h.t, h.connections]) },
    { label: "users", color: "#007a5a", points: history.map((h) => [h.t, h.users]) },
  ];
  const events = [
    { label: "in (published)", color: "#e8912d", points: history.map((h) => [h.t, h.inRate]) },
    { label: "out (delivered)", color: "#3f0e40", points: history.map((h) => [h.t, h.outRate]) },
  ];
  drawChart($("chart-connections"), connections);
  drawChart($("chart-events"), events);
  legend($("legend-connections"), connections);
  legend($("legend-events"), events);

  const rows = [];
  for (const [group, values] of [["error", stats.errors], ["rejected", stats.rejections], ["auth failure", stats.auth_failures]]) {
    for (const [reason, n] of Object.entries(values || {})) if (n) rows.push([`${group}: ${reason}`, fmt(n)]);
  }
  rows.push(["slow consumers cut", fmt(stats.slow_consumer_disconnects)]);
  rows.push(["dead by heartbeat", fmt(stats.heartbeat_write_failures)]);
  rows.push(["reconnections", fmt(stats.reconnections)]);
  rows.push(["resets", fmt(stats.resets)]);
  fillTable($("table-errors"), rows);

  const workers = Object.entries(stats.memory_bytes || {}).map(([pid, rss]) => [`worker ${pid} memory`, bytes(rss)]);
  workers.push(["bus reader", up ? "up" : "DOWN", up ? "" : "down"]);
  workers.push(["reader lag", seconds(stats.bus.reader_lag_seconds)]);
  workers.push(["reader reconnects", fmt(stats.bus.reader_reconnects)]);
  workers.push(["capacity (streams)", fmt(stats.capacity)]);
  fillTable($("table-workers"), workers);
}

// -- what the API can do: end a stream, flip a flag (each confirmed first) ----------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    /* not JSON: the status says enough */
  }
  return { ok: resp.ok, status: resp.status, data };
}

function say(text) {
  $("action-status").textContent = text;
}

function cell(text, tag = "td") {
  const el = document.createElement(tag);
  el.textContent = text;
  return el;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

const FLAGS = [
  ["ENABLE_SSE", "Server-Sent Events", "Off: every open stream is told to switch to long-polling, and /stream answers 503."],
  ["ENABLE_COMPRESSION", "Compression (gzip)", "Applies to new streams and answers; open streams keep what they have."],
];

function renderFlags(flags) {
  $("table-flags").replaceChildren(...FLAGS.map(([name, label, effect]) => {
    const on = flags[name] === true;
    const tr = document.createElement("tr");
    tr.dataset.flag = name;
    const action = cell("");
    action.append(button(on ? "Turn off" : "Turn on", () => flipFlag(name, !on, effect)));
    tr.append(cell(`${label} (${name})`), cell(on ? "on" : "off"), action);
    return tr;
  }));
}

async function flipFlag(name, value, effect) {
  if (!window.confirm(`Turn ${name} ${value ? "on" : "off"} for the whole deployment?\n${effect}`)) {
    say(`${name}: left as it was`);
    return;
  }
  const r = await api("PUT", "/admin/flags", { [name]: value });
  if (!r.ok) {
    say(`PUT /admin/flags: ${r.status} ${r.data?.message ?? ""}`);
    return;
  }
  renderFlags(r.data);
  say(`${name} is now ${r.data[name] ? "on" : "off"} on every worker`);
}

function age(opened) {
  const s = Math.max(0, Date.now() / 1000 - opened);
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${fmt(s / 3600, 1)} h`;
}

function renderConnections(body) {
  const list = body.connections || [];
  $("streams-count").textContent = `${fmt(list.length)}, from ${fmt(body.processes)} worker${body.processes === 1 ? "" : "s"}`;
  const head = document.createElement("tr");
  head.append(...["user", "channels", "open for", "events", "queued", "worker", ""].map((t) => cell(t, "th")));
  const rows = list.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.connection = c.id;
    const action = cell("");
    action.append(button("End", () => kick(c)));
    tr.append(cell(c.user_id), cell(c.channels.join(", ")), cell(age(c.opened)), cell(fmt(c.events_sent)),
      cell(fmt(c.queue_depth)), cell(`${c.worker}@${c.host}`), action);
    return tr;
  });
  $("table-connections").replaceChildren(head, ...rows);
}

async function kick(c) {
  if (!window.confirm(`End ${c.user_id}'s stream ${c.id}?\nIts client reconnects with its cursor and loses no event.`)) {
    say("stream left open");
    return;
  }
  const r = await api("DELETE", `/admin/connections/${encodeURIComponent(c.id)}`);
  say(r.ok ? `ended ${c.user_id}'s stream ${c.id}` : `DELETE /admin/connections: ${r.status} ${r.data?.message ?? ""}`);
  await refreshControls();
}

async function refreshControls() {
  const [connections, flags] = await Promise.all([api("GET", "/admin/connections"), api("GET", "/admin/flags")]);
  if (connections.ok) renderConnections(connections.data);
  if (flags.ok) renderFlags(flags.data);
}

async function poll() {
  try {
    if (!(await ensureToken())) {
      $("status").textContent = "needs a token with admin:sse";
      return;
    }
    const resp = await fetch("/admin/stats", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    if (resp.status === 401) {
      token = null; // expired: mint or ask again on the next round
      sessionStorage.removeItem("cg-admin-token");
      $("status").textContent = "token refused; renewing";
      return;
    }
    if (!resp.ok) {
      $("status").textContent = `GET /admin/stats: ${resp.status}`;
      return;
    }
    const stats = await resp.json();
    render(stats, record(stats));
    await refreshControls();
    $("status").textContent = `updated ${new Date(stats.ts * 1000).toLocaleTimeString()}`;
  } catch (err) {
    $("status").textContent = `offline (${err.message})`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim() || null;
  if (token) {
    sessionStorage.setItem("cg-admin-token", token);
    $("login").hidden = true;
  }
});

poll();
