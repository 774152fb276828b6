// Live signals: the SSE stream feeds new rows into the table without a reload. A lost
// connection reconnects (backing off) from the newest signal id seen, so the server replays
// what was missed: no gap, and no duplicate (ids already shown are skipped).
(function () {
  "use strict";
  const MAX_ROWS = 200;
  let source = null, timer = null, retryMs = 300, section = null;
  const seen = new Set();
  let lastId = null;
  const hook = window.__sfLive = {state: "idle", received: 0, connects: 0, lastId: null,
    drop() { if (source) { source.close(); source = null; schedule(); } }};

  function state(text) {
    hook.state = text;
    const el = section && section.querySelector("[data-live-state]");
    if (el) el.textContent = text;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function fmtNumber(v, digits) {
    return (v === null || v === undefined || !isFinite(v)) ? "–" :
      Number(v).toLocaleString(undefined, {minimumFractionDigits: digits, maximumFractionDigits: digits});
  }

  function addRow(s) {
    const body = section.querySelector("[data-live-rows]");
    const row = document.createElement("tr");
    row.dataset.id = s.id;
    row.className = "fresh";
    const time = document.createElement("time");
    time.setAttribute("datetime", s.bar_ts);
    time.textContent = s.bar_ts;
    cell(row, time);
    const link = document.createElement("a");
    link.href = "/symbols/" + encodeURIComponent(s.symbol) + "?timeframe=" + encodeURIComponent(s.timeframe);
    link.textContent = s.symbol;
    cell(row, link);
    const side = document.createElement("span");
    side.className = "side side-" + String(s.side).replace(/[^a-z]/g, "");
    side.textContent = s.side;
    cell(row, side);
    const strategy = document.createElement("span");
    strategy.textContent = s.strategy + " ";
    const version = document.createElement("span");
    version.className = "muted";
    version.textContent = "v" + s.strategy_version;
    strategy.appendChild(version);
    cell(row, strategy);
    cell(row, fmtNumber(s.score, 3), "num");
    cell(row, fmtNumber(s.price, 2), "num");
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    const empty = section.querySelector("[data-empty]");
    if (empty) empty.remove();
    if (window.SF) window.SF.localTimes(row);
  }

  function onSignal(ev) {
    const s = JSON.parse(ev.data);
    if (seen.has(s.id)) return;
    seen.add(s.id);
    lastId = lastId === null ? s.id : Math.max(lastId, s.id);
    hook.lastId = lastId;
    const side = section.dataset.side;
    if (side && s.side !== side) return;  // the stream filters all but the side
    hook.received += 1;
    addRow(s);
  }

  function schedule() {
    clearTimeout(timer);
    state("reconnecting…");
    if (retryMs >= 2400) {  // failing for a while: signed out? (EventSource hides the status)
      fetch("/api/v1/me", {credentials: "same-origin"}).then((res) => {
        if (res.status === 401) location.assign("/signin?next=" + encodeURIComponent(location.pathname + location.search));
      }).catch(() => {});
    }
    timer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  }

  function connect() {
    if (source) source.close();
    if (!section || !document.body.contains(section)) return;
    const base = section.dataset.stream;
    const url = lastId === null ? base : base + (base.includes("?") ? "&" : "?") + "last_event_id=" + lastId;
    source = new EventSource(url);
    hook.connects += 1;
    state("connecting…");
    source.addEventListener("signal", onSignal);
    source.addEventListener("live", () => { retryMs = 300; state("live"); });
    source.onerror = () => { source.close(); source = null; schedule(); };
  }

  function start() {
    section = document.querySelector("[data-stream]");
    if (!section) return;
    seen.clear();
    for (const row of section.querySelectorAll("tr[data-id]")) seen.add(Number(row.dataset.id));
    // Resume after the newest row the server rendered: whatever was stored between the
    // render and this connection is replayed first. No row: nothing matched when the page
    // was made, so replaying from 0 returns only what matched since.
    lastId = section.dataset.lastId ? Number(section.dataset.lastId) : 0;
    hook.lastId = lastId;
    retryMs = 300;
    connect();
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.target.matches && (ev.target.matches("[data-stream]") || ev.target.querySelector("[data-stream]"))) start();
  });
  window.addEventListener("pagehide", () => { if (source) source.close(); });
})();
