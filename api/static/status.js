// The status page's script: reads /api/v1/status every second with the operator's API
// key (kept in this tab's sessionStorage, never in the address) and draws it. Every
// value is put in as text, never as HTML.
"use strict";
(function () {
  const KEY = "oms-api-key";
  const $ = (id) => document.getElementById(id);

  function takeKeyFromAddress() {
    const match = /(?:^|[#&])key=([^&]+)/.exec(window.location.hash);
    if (match) {
      sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", window.location.pathname);  // out of the address bar and history
    }
  }

  function cell(row, text, numeric, cls) {
    const td = row.insertCell();
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (numeric) td.className = "num";
    if (cls) td.classList.add(cls);
    return td;
  }

  function money(text) {
    if (text === null || text === undefined) return "";
    const n = Number(text);
    return n.toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function signed(el, text) {
    el.textContent = money(text);
    el.className = "value " + (Number(text) > 0 ? "pos" : Number(text) < 0 ? "neg" : "");
  }

  function kpiLevel(k) {
    if (k.value === null) return "none";
    const below = k.alert_below;
    const past = (limit) => limit !== null && (below ? k.value < limit : k.value >= limit);
    if (past(k.critical)) return "critical";
    if (past(k.warning)) return "warning";
    return "ok";
  }

  function kpiText(k, v) {
    if (v === null || v === undefined) return "–";
    if (k.unit === "ratio") return (v * 100).toFixed(2) + "%";
    if (k.unit === "ms") return Number(v).toFixed(1) + " ms";
    return String(v);
  }

  function fill(tbody, rows, draw) {
    tbody.replaceChildren();
    for (const item of rows) draw(tbody.insertRow(), item);
    if (!rows.length) { const r = tbody.insertRow(); const td = cell(r, "none"); td.colSpan = 20; td.className = "dim"; }
  }

  function chart(points) {
    const svg = $("chart");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const W = 600, H = 180, pad = 6;
    const values = points.map((p) => Number(p[1]));
    if (values.length === 0) return;
    const lo = Math.min(0, ...values), hi = Math.max(0, ...values);
    const span = hi - lo || 1;
    const x = (i) => values.length === 1 ? W / 2 : pad + (i * (W - 2 * pad)) / (values.length - 1);
    const y = (v) => H - pad - ((v - lo) * (H - 2 * pad)) / span;
    const zero = document.createElementNS(ns, "line");
    zero.setAttribute("x1", 0); zero.setAttribute("x2", W); zero.setAttribute("y1", y(0)); zero.setAttribute("y2", y(0));
    zero.setAttribute("stroke", "#2a333d"); zero.setAttribute("stroke-dasharray", "4 4");
    svg.appendChild(zero);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", values[values.length - 1] >= 0 ? "#3fb950" : "#f85149");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(values.length - 1)); dot.setAttribute("cy", y(values[values.length - 1])); dot.setAttribute("r", 3);
    dot.setAttribute("fill", line.getAttribute("stroke"));
    svg.appendChild(dot);
  }

  function draw(s) {
    $("state").textContent = s.trading_state; $("state").className = "badge " + s.trading_state;
    const health = s.health.state || "";
    $("health").textContent = "health " + health + (s.health.reason ? ": " + s.health.reason : "");
    $("health").className = "badge " + health;
    $("account").textContent = s.account; $("broker").textContent = s.broker; $("live").textContent = s.live_orders;
    $("updated").textContent = new Date(s.at).toLocaleTimeString();
    signed($("pnl-net"), s.pnl.net); signed($("pnl-realized"), s.pnl.realized); signed($("pnl-unrealized"), s.pnl.unrealized);
    $("pnl-charges").textContent = money(s.pnl.charges);
    chart(s.pnl_history);
    fill($("kpis"), s.kpis, (r, k) => {
      cell(r, k.name);
      const v = cell(r, kpiText(k, k.value) + (k.p99 !== undefined && k.p99 !== null ? " (p99 " + kpiText(k, k.p99) + ")" : ""), true,
                     "kpi-" + kpiLevel(k));
      v.title = "over " + k.sample + (k.unit === "count" ? " passes" : " samples");
      cell(r, k.target); cell(r, kpiText(k, k.warning), true); cell(r, kpiText(k, k.critical), true);
    });
    const alerts = $("alerts");
    alerts.replaceChildren();
    for (const a of s.alerts) {
      const div = document.createElement("div");
      div.className = "alert " + a.severity;
      div.textContent = a.severity.toUpperCase() + " " + a.name + ": " + a.summary;
      alerts.appendChild(div);
    }
    if (!s.alerts.length) { const p = document.createElement("div"); p.className = "dim"; p.textContent = "none active"; alerts.appendChild(p); }
    fill($("positions"), s.positions, (r, p) => {
      cell(r, p.exchange + ":" + p.symbol); cell(r, p.product); cell(r, p.quantity, true); cell(r, money(p.average_price), true);
      cell(r, money(p.last_price), true);
      cell(r, money(p.unrealized_pnl), true, Number(p.unrealized_pnl) < 0 ? "neg" : "pos");
      cell(r, money(p.realized_pnl), true, Number(p.realized_pnl) < 0 ? "neg" : "pos");
      cell(r, money(p.charges), true); cell(r, money(p.net_pnl), true, Number(p.net_pnl) < 0 ? "neg" : "pos");
    });
    fill($("orders"), s.orders, (r, o) => {
      cell(r, o.order_id, true); cell(r, o.strategy_id, true); cell(r, o.exchange + ":" + o.symbol); cell(r, o.side);
      cell(r, o.quantity, true); cell(r, o.order_type); cell(r, money(o.price), true); cell(r, o.status);
      cell(r, o.filled_quantity, true); cell(r, money(o.average_price), true);
      cell(r, new Date(o.updated_at).toLocaleTimeString());
    });
  }

  function showLogin(message) {
    $("board").hidden = true; $("login").hidden = false;
    $("login-problem").textContent = message || "";
  }

  async function refresh() {
    const key = sessionStorage.getItem(KEY);
    if (!key) { showLogin(""); return; }
    try {
      const response = await fetch("/api/v1/status", { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
      if (response.status === 401) { sessionStorage.removeItem(KEY); showLogin("That key was refused."); return; }
      const body = await response.json();
      if (!response.ok) { $("problem").textContent = (body.error && body.error.reason) || response.statusText; }
      else { $("problem").textContent = ""; draw(body); }
      $("login").hidden = true; $("board").hidden = false;
    } catch (error) {
      $("problem").textContent = "The OMS does not answer (" + error.message + "); trying again.";
    }
    setTimeout(refresh, 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeKeyFromAddress();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = "";
      refresh();
    });
    refresh();
  });
})();
