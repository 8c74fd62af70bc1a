// hashmarket's dashboard: one page, no build step, nothing fetched from outside this node.
//
// Theory of operation
// -------------------
// The market view reads history with the public `market.history` call and lives on
// `GET /events` (one `market` event per market per second); every figure it shows is the
// API's own string (speeds in the market's unit, BTC with 8 decimals), so it matches what
// `market.stats` and `market.orderbook` answer. The account view signs every call here, with
// WebCrypto's HMAC-SHA256, exactly as buyer-api.md says (NiceHash's API v2 scheme); the
// credentials live in this tab's sessionStorage and nowhere else. Charts are plotly.js,
// served by the node from the `plotly` package it installs. Everything the page writes into
// the document goes through textContent: ids, worker names and errors come from other people.
"use strict";

(() => {
  const CREDENTIALS = "hashmarket.credentials";
  const HOUR = 3_600_000;
  const LIVE_POINTS = 600; // ten minutes of live events per market
  const ACCOUNT_REFRESH_MS = 5_000;
  const HISTORY_REFRESH_MS = 30_000;
  const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

  const state = {
    markets: [], // market.info's markets
    tab: null, // an algorithm, or "account"
    latest: {}, // algorithm -> last market event
    live: {}, // algorithm -> [{t, speed, workers, shares, rejected}]
    history: {}, // algorithm -> {hour, day}
    clockOffset: 0, // server wall clock minus ours, for X-Time
    creds: null,
    orderStats: {}, // order id -> order.stats result (ended orders are fetched once)
    received: 0, // market events received
  };

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // ------------------------------------------------------------------ formatting

  const pad = (n, width = 2) => String(n).padStart(width, "0");
  // Plotly reads a date string without a zone as it is: give it the viewer's local time.
  function plotTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  const localTime = (ms) => new Date(ms).toLocaleString();
  const num = (text) => (text === null || text === undefined ? null : Number(text));
  const unitOf = (algorithm) => (state.markets.find((m) => m.algorithm === algorithm) || {}).unit || "";

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "-" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fillTable(table, rows, columns) {
    const body = $("tbody", table);
    body.replaceChildren();
    for (const item of rows) {
      const tr = document.createElement("tr");
      for (const column of columns) cell(tr, column(item));
      body.appendChild(tr);
    }
  }

  // ------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(code, message, data) {
      super(`${code} ${message}`);
      this.code = code;
      this.apiMessage = message;
      this.data = data;
    }
  }

  const encoder = new TextEncoder();
  const hex = (buffer) =>
    Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

  function token() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return hex(bytes);
  }

  // buyer-api.md: lowercase hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, over
  // key_id \0 time \0 nonce \0 \0 org_id \0 \0 METHOD \0 path \0 query [\0 body].
  async function sign({ secret, keyId, time, nonce, orgId, method, path, query, body }) {
    const parts = [keyId, time, nonce, "", orgId, "", method, path, query];
    if (body !== null && body !== undefined) parts.push(body);
    const key = await crypto.subtle.importKey(
      "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
    );
    return hex(await crypto.subtle.sign("HMAC", key, encoder.encode(parts.join("\0"))));
  }

  let nextId = 1;
  async function rpc(method, params = {}, { creds = null, mutating = false } = {}) {
    const body = JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params });
    const headers = { "content-type": "application/json" };
    if (creds) {
      const time = String(Date.now() + state.clockOffset);
      const nonce = token();
      const signature = await sign({
        secret: creds.secret, keyId: creds.keyId, time, nonce, orgId: creds.account,
        method: "POST", path: "/rpc", query: "", body,
      });
      Object.assign(headers, {
        "x-time": time,
        "x-nonce": nonce,
        "x-organization-id": creds.account,
        "x-auth": `${creds.keyId}:${signature}`,
      });
      if (mutating) headers["x-request-id"] = token();
    }
    const response = await fetch("/rpc", { method: "POST", headers, body });
    if (response.status !== 200) throw new ApiError(response.status, `HTTP ${response.status}`, null);
    const answer = await response.json();
    if (answer.error) throw new ApiError(answer.error.code, answer.error.message, answer.error.data);
    return answer.result;
  }

  async function syncClock() {
    const sent = Date.now();
    const result = await rpc("server.time");
    const received = Date.now();
    state.clockOffset = result.time_ms - Math.round((sent + received) / 2);
  }

  // ------------------------------------------------------------------ charts

  function plot(id, traces, layout = {}) {
    const element = document.getElementById(id);
    if (!element || typeof Plotly === "undefined") return;
    const base = {
      margin: { l: 56, r: 56, t: 8, b: 36 },
      height: element.classList.contains("small") ? 200 : 260,
      showlegend: true,
      legend: { orientation: "h", y: -0.2 },
      uirevision: id,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { size: 11 },
    };
    Plotly.react(element, traces, Object.assign(base, layout), PLOT_CONFIG);
  }

  function timeAxis(spanMs) {
    const now = Date.now() + state.clockOffset;
    return { type: "date", range: [plotTime(now - spanMs), plotTime(now)] };
  }

  function speedChart(id, points, algorithm, live, spanMs) {
    const unit = unitOf(algorithm);
    const traces = [
      {
        name: `accepted ${unit}/s`, type: "scatter", mode: "lines+markers",
        x: points.map((p) => plotTime(p.time_ms)), y: points.map((p) => num(p.accepted_speed)),
        line: { color: COLORS[0] }, marker: { size: 3 },
      },
      {
        name: "workers", type: "scatter", mode: "lines", yaxis: "y2", line: { shape: "hv", color: COLORS[1] },
        x: points.map((p) => plotTime(p.time_ms)), y: points.map((p) => p.workers),
      },
    ];
    if (live) {
      traces.push({
        name: `live ${unit}/s`, type: "scatter", mode: "lines", line: { color: COLORS[2], dash: "dot" },
        x: live.map((p) => plotTime(p.t)), y: live.map((p) => p.speed),
      });
    }
    plot(id, traces, {
      xaxis: timeAxis(spanMs),
      yaxis: { title: `${unit}/s`, rangemode: "tozero" },
      yaxis2: { title: "workers", overlaying: "y", side: "right", rangemode: "tozero", dtick: 1 },
    });
  }

  function drawHistory(algorithm) {
    const history = state.history[algorithm];
    if (!history) return;
    speedChart("chart-speed-1h", history.hour, algorithm, state.live[algorithm], HOUR);
    speedChart("chart-speed-24h", history.day, algorithm, null, 24 * HOUR);
    const priced = history.day.filter((p) => p.best_price !== null || p.fill_price !== null);
    plot("chart-prices", [
      { name: "best", type: "scatter", mode: "lines+markers", line: { shape: "hv", color: COLORS[0] },
        x: priced.map((p) => plotTime(p.time_ms)), y: priced.map((p) => num(p.best_price)) },
      { name: "fill", type: "scatter", mode: "lines+markers", line: { shape: "hv", color: COLORS[2] },
        x: priced.map((p) => plotTime(p.time_ms)), y: priced.map((p) => num(p.fill_price)) },
    ], {
      margin: { l: 88, r: 24, t: 8, b: 36 },
      xaxis: timeAxis(24 * HOUR),
      yaxis: { title: "BTC", tickformat: ".8f", rangemode: "tozero" },
    });
  }

  function drawShares(algorithm) {
    const live = state.live[algorithm] || [];
    const history = (state.history[algorithm] || { hour: [] }).hour;
    const x = live.map((p) => plotTime(p.t));
    const traces = [
      { name: "accepted/s (per minute)", type: "bar", marker: { color: "#c6dbef" },
        x: history.map((p) => plotTime(p.time_ms + 30_000)), y: history.map((p) => p.shares / 60) },
      { name: "accepted/s", type: "scatter", mode: "lines", line: { color: COLORS[0] },
        x, y: live.map((p) => p.shares) },
    ];
    const reasons = new Set(live.flatMap((p) => Object.keys(p.rejected)));
    let i = 3;
    for (const reason of [...reasons].sort()) {
      traces.push({ name: `rejected/s ${reason}`, type: "scatter", mode: "lines",
        line: { color: COLORS[i++ % COLORS.length] }, x, y: live.map((p) => p.rejected[reason] || 0) });
    }
    plot("chart-shares", traces, { yaxis: { title: "shares/s", rangemode: "tozero" } });
  }

  function drawDepth(event) {
    // Best first, as steps: each order's price over its share of the cumulative limit (an
    // unlimited order counts what it receives now); the served part is filled.
    const limit = { x: [], y: [] };
    const served = { x: [], y: [] };
    let capacity = 0;
    let speed = 0;
    for (const order of event.orders) {
      const price = num(order.price);
      const accepted = num(order.accepted_speed);
      limit.x.push(capacity);
      served.x.push(speed);
      capacity += num(order.limit) > 0 ? num(order.limit) : accepted;
      speed += accepted;
      limit.x.push(capacity);
      served.x.push(speed);
      limit.y.push(price, price);
      served.y.push(price, price);
    }
    plot("chart-depth", [
      { name: "served", type: "scatter", mode: "lines", fill: "tozeroy", line: { color: COLORS[2] }, ...served },
      { name: "cumulative limit", type: "scatter", mode: "lines", line: { color: COLORS[0] }, ...limit },
    ], {
      margin: { l: 88, r: 24, t: 8, b: 36 },
      xaxis: { title: `${event.unit}/s`, rangemode: "tozero" },
      yaxis: { title: "BTC", tickformat: ".8f", rangemode: "tozero" },
    });
  }

  // ------------------------------------------------------------------ market view

  function showTotals(event) {
    const rejected = Object.entries(event.rejected_per_s);
    const values = {
      accepted_speed: event.accepted_speed,
      unit: event.unit,
      workers: event.workers,
      shares_per_s: event.shares_per_s,
      rejected_per_s: rejected.length ? rejected.map(([r, n]) => `${r} ${n}`).join(", ") : "0.000",
      best_price: event.best_price === null ? "-" : event.best_price,
      fill_price: event.fill_price === null ? "-" : event.fill_price,
      total_speed: event.total_speed,
      orders: event.orders.length,
      time: localTime(event.time_ms),
    };
    for (const [name, value] of Object.entries(values)) {
      const element = $(`[data-total="${name}"]`);
      element.textContent = String(value);
    }
    const time = $('[data-total="time"]');
    time.dataset.ms = String(event.time_ms);
    time.dateTime = new Date(event.time_ms).toISOString();
    fillTable($("#book"), event.orders, [
      (o) => o.id, (o) => o.type, (o) => o.price, (o) => o.limit, (o) => o.accepted_speed, (o) => o.workers,
    ]);
  }

  function onMarket(event) {
    state.received += 1;
    const algorithm = event.algorithm;
    state.latest[algorithm] = event;
    const live = (state.live[algorithm] = state.live[algorithm] || []);
    const rejected = {};
    for (const [reason, rate] of Object.entries(event.rejected_per_s)) rejected[reason] = num(rate);
    live.push({
      t: event.time_ms, speed: num(event.accepted_speed), workers: event.workers,
      shares: num(event.shares_per_s), rejected,
    });
    if (live.length > LIVE_POINTS) live.splice(0, live.length - LIVE_POINTS);
    if (state.tab === algorithm) {
      showTotals(event);
      drawDepth(event);
      drawShares(algorithm);
      drawHistory(algorithm);
    }
  }

  async function loadHistory(algorithm) {
    const now = Date.now() + state.clockOffset;
    const [hour, day] = await Promise.all([
      rpc("market.history", { algorithm, since_ms: now - HOUR, resolution_s: 60 }),
      rpc("market.history", { algorithm, since_ms: now - 24 * HOUR, resolution_s: 300 }),
    ]);
    state.history[algorithm] = { hour: hour.points, day: day.points };
    if (state.tab === algorithm) {
      drawHistory(algorithm);
      drawShares(algorithm);
    }
  }

  function connectEvents() {
    const live = $("#live");
    const source = new EventSource("/events");
    source.addEventListener("open", () => {
      live.dataset.state = "live";
      live.textContent = "live";
    });
    source.addEventListener("error", () => {
      live.dataset.state = "reconnecting";
      live.textContent = "reconnecting";
    });
    source.addEventListener("market", (message) => {
      onMarket(JSON.parse(message.data));
      document.body.dataset.events = String(state.received);
    });
  }

  // ------------------------------------------------------------------ tabs

  function selectTab(tab) {
    state.tab = tab;
    for (const button of $$("#tabs button")) button.setAttribute("aria-selected", String(button.dataset.tab === tab));
    $("#market-view").hidden = tab === "account";
    $("#account-view").hidden = tab !== "account";
    if (tab === "account") {
      refreshAccount().catch(reportError);
      return;
    }
    if (state.latest[tab]) onMarket(state.latest[tab]);
    loadHistory(tab).catch(reportError);
  }

  function buildTabs() {
    const nav = $("#tabs");
    for (const tab of [...state.markets.map((m) => m.algorithm), "account"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.tab = tab;
      button.textContent = tab;
      button.addEventListener("click", () => selectTab(tab));
      nav.appendChild(button);
    }
    const select = $('#form-create [name="algorithm"]');
    for (const market of state.markets) {
      const option = document.createElement("option");
      option.textContent = market.algorithm;
      select.appendChild(option);
    }
  }

  // ------------------------------------------------------------------ account view

  function showError(name, error) {
    const output = $(`[data-error="${name}"]`);
    if (!output) return;
    if (!error) {
      output.textContent = "";
      output.removeAttribute("data-code");
      return;
    }
    const detail = error.data ? ` ${JSON.stringify(error.data)}` : "";
    output.dataset.code = String(error.code);
    output.textContent = `error ${error.code}: ${error.apiMessage || error.message}${detail}`;
  }

  function showSignedIn(signedIn) {
    $("#signin").hidden = signedIn;
    $("#account").hidden = !signedIn;
    if (signedIn) $('[data-account="id"]').textContent = state.creds.account;
  }

  async function refreshAccount() {
    if (!state.creds || state.tab !== "account") return;
    const creds = state.creds;
    const since = Date.now() + state.clockOffset - 24 * HOUR;
    const [balance, orders, workers, ledger, history] = await Promise.all([
      rpc("account.balance", {}, { creds }),
      rpc("order.list", {}, { creds }),
      rpc("worker.list", {}, { creds }),
      rpc("account.ledger", { limit: 50 }, { creds }),
      rpc("account.history", { since_ms: since, resolution_s: 300 }, { creds }),
    ]);
    $('[data-balance="available"]').textContent = balance.available;
    $('[data-balance="escrowed"]').textContent = balance.escrowed;
    plot("chart-account", [
      { name: "spent", type: "bar", x: history.points.map((p) => plotTime(p.time_ms)), y: history.points.map((p) => num(p.spent)) },
      { name: "earned", type: "bar", x: history.points.map((p) => plotTime(p.time_ms)), y: history.points.map((p) => num(p.earned)) },
    ], {
      margin: { l: 88, r: 24, t: 8, b: 36 },
      xaxis: timeAxis(24 * HOUR),
      yaxis: { title: "BTC", tickformat: ".8f" },
      barmode: "group",
    });
    await showOrders(orders.orders.slice().reverse().slice(0, 12), creds);
    fillTable($("#workers"), workers.workers, [
      (w) => w.name, (w) => w.algorithm, (w) => (w.connected ? "yes" : "no"), (w) => w.speed,
      (w) => w.difficulty, (w) => w.accepted,
      (w) => Object.entries(w.rejected).map(([r, n]) => `${r} ${n}`).join(", ") || "0",
      (w) => w.order_id, (w) => w.earned,
    ]);
    fillTable($("#ledger"), ledger.entries, [
      (e) => e.id, (e) => localTime(e.time_ms), (e) => e.kind, (e) => e.amount, (e) => e.ref,
    ]);
  }

  async function showOrders(orders, creds) {
    const select = $('#form-change [name="id"]');
    const chosen = select.value;
    select.replaceChildren();
    for (const order of orders.filter((o) => o.status === "active")) {
      const option = document.createElement("option");
      option.textContent = order.id;
      select.appendChild(option);
    }
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
    const stats = await Promise.all(orders.map((order) => {
      const cached = state.orderStats[order.id];
      if (cached && order.status !== "active") return cached;
      return rpc("order.stats", { id: order.id }, { creds });
    }));
    const list = $("#orders");
    const keep = new Set(orders.map((o) => o.id));
    for (const card of $$(".order", list)) if (!keep.has(card.dataset.order)) card.remove();
    orders.forEach((order, i) => {
      state.orderStats[order.id] = stats[i];
      let card = $(`.order[data-order="${CSS.escape(order.id)}"]`, list);
      if (!card) {
        card = document.createElement("div");
        card.className = "order";
        card.dataset.order = order.id;
        const facts = document.createElement("p");
        const chart = document.createElement("div");
        chart.className = "chart small";
        chart.id = `chart-order-${order.id}`;
        card.append(facts, chart);
        list.appendChild(card);
      }
      card.dataset.status = order.status;
      $("p", card).textContent =
        `${order.id} ${order.algorithm} ${order.type} ${order.status}: price ${order.price}, ` +
        `limit ${order.limit} ${order.unit}/s, amount ${order.amount}, spent ${order.spent}, ` +
        `remaining ${order.remaining}, speed ${order.accepted_speed} ${order.unit}/s, ` +
        `workers ${order.workers}`;
      const points = stats[i].points;
      plot(`chart-order-${order.id}`, [
        { name: `speed ${order.unit}/s`, type: "scatter", mode: "lines+markers",
          x: points.map((p) => plotTime(p.time_ms)), y: points.map((p) => num(p.accepted_speed)) },
        { name: "spend BTC", type: "bar", yaxis: "y2", opacity: 0.5,
          x: points.map((p) => plotTime(p.time_ms)), y: points.map((p) => num(p.spend)) },
      ], {
        yaxis: { title: `${order.unit}/s`, rangemode: "tozero" },
        yaxis2: { title: "BTC", overlaying: "y", side: "right", tickformat: ".8f", rangemode: "tozero" },
      });
    });
  }

  function formValues(form) {
    const values = {};
    for (const [name, value] of new FormData(form).entries()) {
      const text = String(value).trim();
      if (text !== "") values[name] = text;
    }
    return values;
  }

  async function submitCreate(form) {
    const values = formValues(form);
    const params = { algorithm: values.algorithm, type: values.type, limit: values.limit || "0", amount: values.amount || "" };
    if (values.price) params.price = values.price;
    if (values.duration_s) params.duration_s = Number(values.duration_s);
    const order = await rpc("order.create", params, { creds: state.creds, mutating: true });
    return `placed ${order.id}`;
  }

  async function submitChange(form) {
    const values = formValues(form);
    const id = values.id || "";
    const calls = {
      set_price: ["order.set_price", { id, price: values.value || "" }],
      set_limit: ["order.set_limit", { id, limit: values.value || "" }],
      refill: ["order.refill", { id, amount: values.value || "" }],
      cancel: ["order.cancel", { id }],
    };
    const [method, params] = calls[values.action];
    const order = await rpc(method, params, { creds: state.creds, mutating: true });
    return `${order.id}: ${order.status}, price ${order.price}, limit ${order.limit}, amount ${order.amount}`;
  }

  function bindForm(form, name, action) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const output = $(`[data-error="${name}"]`);
      output.dataset.state = "busy";
      try {
        const done = await action(form);
        showError(name, null);
        output.textContent = done;
        output.dataset.state = "ok";
        await refreshAccount();
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        showError(name, error);
        output.dataset.state = "error";
      }
    });
  }

  function bindAccount() {
    $("#signin").addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = formValues(event.target);
      const creds = { account: values.account || "", keyId: values.key_id || "", secret: values.secret || "" };
      const output = $('[data-error="signin"]');
      try {
        await rpc("account.balance", {}, { creds });
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        showError("signin", error);
        output.dataset.state = "error";
        return;
      }
      showError("signin", null);
      state.creds = creds;
      sessionStorage.setItem(CREDENTIALS, JSON.stringify(creds));
      event.target.reset();
      showSignedIn(true);
      await refreshAccount();
    });
    $("#signout").addEventListener("click", () => {
      sessionStorage.removeItem(CREDENTIALS);
      state.creds = null;
      state.orderStats = {};
      showSignedIn(false);
    });
    bindForm($("#form-create"), "create", submitCreate);
    bindForm($("#form-change"), "change", submitChange);
    const saved = sessionStorage.getItem(CREDENTIALS);
    if (saved) {
      state.creds = JSON.parse(saved);
      showSignedIn(true);
    }
  }

  function reportError(error) {
    const live = $("#live");
    live.dataset.state = "error";
    live.textContent = error instanceof ApiError ? `error ${error.code}` : "offline";
  }

  // ------------------------------------------------------------------ start

  async function start() {
    await syncClock();
    state.markets = (await rpc("market.info")).markets;
    buildTabs();
    bindAccount();
    connectEvents();
    const wanted = new URLSearchParams(location.search).get("tab");
    const tabs = [...state.markets.map((m) => m.algorithm), "account"];
    selectTab(tabs.includes(wanted) ? wanted : tabs[0]);
    setInterval(() => {
      if (state.tab && state.tab !== "account") loadHistory(state.tab).catch(reportError);
    }, HISTORY_REFRESH_MS);
    setInterval(() => refreshAccount().catch(reportError), ACCOUNT_REFRESH_MS);
    document.body.dataset.ready = "true";
  }

  // For tests and the curious: the signing function and the call helper.
  window.hashmarket = { sign, rpc, state };
  start().catch(reportError);
})();
