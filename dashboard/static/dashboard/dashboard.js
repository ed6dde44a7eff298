/* Signal Service dashboard: history from the REST API (under /dashboard/api/, the session's copy of
   /api/v2/signals/), then live over the session WebSocket /ws/v2/dashboard/ (docs/REFERENCE.md §6). */
(function () {
  "use strict";
  const LC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const SPECS = JSON.parse($("indicator-specs").textContent);
  const TF_SECONDS = {"1m": 60, "5m": 300, "15m": 900};
  const PANE_INDICATORS = new Set(["rsi", "mfi", "cci", "stoch", "willr", "adx", "macd", "atr"]);
  const COLORS = ["#f5a623", "#4aa3ff", "#bd10e0", "#7ed321", "#ff6b6b", "#50e3c2"];
  const IDLE_S = 10;
  const COMPACT = new Intl.NumberFormat("en-US", {notation: "compact", maximumFractionDigits: 1});

  const state = {
    underlying: null, expiry: null, timeframe: "1m", rows: new Map(), spot: null, atmIv: null,
    ws: null, retry: 0, socketUp: false, lastData: Date.now(), subs: new Map(), byKey: new Map(), awaiting: [],
    lastCandle: null, indicatorSeries: new Map(), lastAtmTime: 0, health: null, rate: null, frames: 0,
    chainFrames: 0,
  };
  window.dashboard = state;  // read by the browser tests

  // --- REST ---------------------------------------------------------------------------------------------------
  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 401 || response.status === 403) {
      location.href = "/dashboard/login/?next=/";
      throw new Error("logged out");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    return body;
  }

  function seconds(iso) { return Math.floor(Date.parse(iso) / 1000); }

  function ascending(points) {
    const out = [];
    for (const p of points.sort((a, b) => a.time - b.time)) {
      if (out.length && out[out.length - 1].time === p.time) out[out.length - 1] = p; else out.push(p);
    }
    return out;
  }

  // --- notices ------------------------------------------------------------------------------------------------
  const notices = new Map();
  function notice(kind, text) {
    if (text) notices.set(kind, text); else notices.delete(kind);
    const box = $("notice");
    box.textContent = Array.from(notices.values()).join(" · ");
    box.hidden = notices.size === 0;
  }
  function failed(what) { return (error) => notice(what, `${what}: ${error.message}`); }

  // --- option chain -------------------------------------------------------------------------------------------
  const fmt = {
    oi: (v) => v == null ? "–" : COMPACT.format(v),
    ltp: (v) => v == null ? "–" : v.toFixed(2),
    iv: (v) => v == null ? "–" : (v * 100).toFixed(2),
    delta: (v) => v == null ? "–" : v.toFixed(3),
    gamma: (v) => v == null ? "–" : v.toFixed(5),
    theta: (v) => v == null ? "–" : v.toFixed(2),
    vega: (v) => v == null ? "–" : v.toFixed(2),
  };
  const CALL_COLUMNS = [["oi", "oi"], ["option_price", "ltp"], ["iv", "iv"], ["delta", "delta"], ["gamma", "gamma"],
                        ["theta", "theta"], ["vega", "vega"]];
  const PUT_COLUMNS = CALL_COLUMNS.slice().reverse();

  function applyChain(data, whole) {
    if (whole) state.rows = new Map();
    for (const row of data.strikes || []) {
      const held = state.rows.get(row.strike) || {strike: row.strike};
      if (row.call !== undefined) held.call = row.call;
      if (row.put !== undefined) held.put = row.put;
      state.rows.set(row.strike, held);
    }
    if (data.spot != null) state.spot = data.spot;
    if (data.timestamp) $("chain-time").textContent = new Date(data.timestamp).toLocaleTimeString();
    scheduleChainRender();
  }

  let renderPending = false;
  function scheduleChainRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => { renderPending = false; renderChain(); });
  }

  function sideCells(tr, right, side, columns, itm) {
    for (const [field, kind] of columns) {
      const td = tr.insertCell();
      td.dataset.field = `${right}-${kind}`;
      td.textContent = side ? fmt[kind](side[field]) : "–";
      if (itm) td.classList.add("itm");
      if (side && kind === "iv") {
        if (side.sigma_source === "indvix") td.insertAdjacentHTML("beforeend", '<span class="flag" title="priced with INDVIX: IV not solved">V</span>');
        if (side.stale_underlying) td.insertAdjacentHTML("beforeend", '<span class="flag stale" title="stale underlying price">S</span>');
      }
    }
  }

  function renderChain() {
    const strikes = Array.from(state.rows.keys()).sort((a, b) => a - b);
    const spot = state.spot;
    let atm = null;
    if (spot != null) for (const k of strikes) if (atm === null || Math.abs(k - spot) < Math.abs(atm - spot)) atm = k;
    const body = document.createElement("tbody");
    let indvix = 0, stale = 0;
    for (const strike of strikes) {
      const row = state.rows.get(strike);
      const tr = body.insertRow();
      tr.dataset.strike = strike;
      if (strike === atm) tr.classList.add("atm");
      sideCells(tr, "call", row.call, CALL_COLUMNS, spot != null && strike < spot);
      const mid = tr.insertCell();
      mid.className = "strike";
      mid.textContent = strike;
      sideCells(tr, "put", row.put, PUT_COLUMNS, spot != null && strike > spot);
      for (const side of [row.call, row.put]) {
        if (side && side.sigma_source === "indvix") indvix += 1;
        if (side && side.stale_underlying) stale += 1;
      }
    }
    $("chain").replaceChild(body, $("chain").tBodies[0]);
    centreStrikes(body);
    $("spot").textContent = spot == null ? "–" : spot.toFixed(2);
    $("atm-strike").textContent = atm == null ? "–" : atm;
    const flags = [];
    if (indvix) flags.push(`${indvix} priced with INDVIX`);
    if (stale) flags.push(`${stale} with a stale underlying`);
    $("chain-flags").textContent = flags.join(" · ");
  }

  let centred = false;
  function centreStrikes(body) {
    // on a narrow screen the table scrolls sideways: start with the strike column in the middle, once per chain
    const wrap = document.querySelector(".table-wrap");
    const cell = body.querySelector("td.strike");
    if (centred || !cell || wrap.scrollWidth <= wrap.clientWidth) return;
    wrap.scrollLeft = cell.offsetLeft + cell.offsetWidth / 2 - wrap.clientWidth / 2;
    centred = true;
  }

  function applyAtmIv(view, stamp) {
    const iv = view && view.atm_iv ? view.atm_iv.iv : null;
    state.atmIv = iv;
    $("atm-iv-value").textContent = iv == null ? "–" : `${(iv * 100).toFixed(2)}%`;
    if (iv != null && stamp) {
      const t = Math.floor(seconds(stamp) / 60) * 60;
      if (t >= state.lastAtmTime) {
        atmSeries.update({time: t, value: iv * 100});
        state.lastAtmTime = t;
        bump($("atm-iv"), "points");
      }
    }
  }

  // --- charts -------------------------------------------------------------------------------------------------
  const chartOptions = {
    autoSize: true,
    layout: {background: {color: "#171d24"}, textColor: "#d8dee6"},
    grid: {vertLines: {color: "#222a33"}, horzLines: {color: "#222a33"}},
    timeScale: {timeVisible: true, secondsVisible: false},
  };
  const candleChart = LC.createChart($("candles"), chartOptions);
  const candles = candleChart.addSeries(LC.CandlestickSeries, {});
  const atmChart = LC.createChart($("atm-iv"), chartOptions);
  const atmSeries = atmChart.addSeries(LC.LineSeries, {color: "#f5a623", lineWidth: 2,
                                                       priceFormat: {type: "custom", formatter: (v) => `${v.toFixed(2)}%`}});

  function bump(el, name, value) {
    el.dataset[name] = value === undefined ? Number(el.dataset[name] || 0) + 1 : value;
  }

  function chosenSpecs() {
    const picked = new Set(Array.from(document.querySelectorAll('input[name="indicator"]:checked')).map((i) => i.value));
    return SPECS.filter((s) => picked.has(s.output_key));
  }

  async function loadCandles() {
    const key = state.underlying, tf = state.timeframe;
    const body = await getJSON(`/dashboard/api/historical/bars/${enc(key)}?timeframe=${enc(tf)}`);
    if (key !== state.underlying || tf !== state.timeframe) return;
    const bars = ascending(body.bars.map((b) => ({time: seconds(b.time), open: b.open, high: b.high, low: b.low,
                                                   close: b.close})));
    candles.setData(bars);
    state.lastCandle = bars.length ? {...bars[bars.length - 1]} : null;
    bump($("candles"), "bars", bars.length);
    notice("candles", null);
    await loadIndicators();
  }

  async function loadIndicators() {
    for (const series of state.indicatorSeries.values()) candleChart.removeSeries(series);
    state.indicatorSeries = new Map();
    const specs = chosenSpecs();
    if (!specs.length || !state.underlying) return;
    const query = JSON.stringify(specs.map((s) => ({name: s.name, parameters: s.parameters, output_key: s.output_key})));
    const key = state.underlying, tf = state.timeframe;
    const body = await getJSON(`/dashboard/api/historical/indicators/${enc(key)}?timeframe=${enc(tf)}&indicators=${enc(query)}`);
    if (key !== state.underlying || tf !== state.timeframe) return;
    specs.forEach((spec, i) => {
      const pane = PANE_INDICATORS.has(spec.name.toLowerCase()) ? 1 : 0;
      const series = candleChart.addSeries(LC.LineSeries, {color: COLORS[i % COLORS.length], lineWidth: 1,
                                                           title: spec.output_key}, pane);
      const points = ascending(body.values.filter((v) => v[spec.output_key] != null)
        .map((v) => ({time: seconds(v.time), value: v[spec.output_key]})));
      series.setData(points);
      series.lastTime = points.length ? points[points.length - 1].time : 0;
      state.indicatorSeries.set(spec.output_key, series);
    });
    $("candles").dataset.indicators = state.indicatorSeries.size;
  }

  function liveCandle(record) {
    const tick = record.tick_data || {};
    if (tick.ltp == null) return;
    const step = TF_SECONDS[state.timeframe];
    const t = Math.floor(seconds(record.timestamp) / step) * step;
    const last = state.lastCandle;
    if (last && t < last.time) return;
    const bar = last && t === last.time
      ? {...last, high: Math.max(last.high, tick.ltp), low: Math.min(last.low, tick.ltp), close: tick.ltp}
      : {time: t, open: tick.ltp, high: tick.ltp, low: tick.ltp, close: tick.ltp};
    candles.update(bar);
    if (!last || t !== last.time) bump($("candles"), "bars");
    state.lastCandle = bar;
  }

  function liveIndicators(data) {
    if (!data || !data.values || !data.bar_time) return;
    const t = seconds(data.bar_time);
    for (const [key, series] of state.indicatorSeries) {
      const value = data.values[key];
      if (value == null || t < series.lastTime) continue;
      series.update({time: t, value});
      series.lastTime = t;
    }
  }

  async function loadAtmIv() {
    const key = state.underlying, expiry = state.expiry;
    const start = new Date();
    start.setHours(0, 0, 0, 0);
    const body = await getJSON(`/dashboard/api/historical/moneyness/${enc(key)}/atm-iv?expiry_date=${enc(expiry)}` +
                               `&timeframe=1m&start_time=${enc(start.toISOString())}`);
    if (key !== state.underlying || expiry !== state.expiry) return;
    const points = ascending(body.series.filter((p) => p.iv != null).map((p) => ({time: seconds(p.time), value: p.iv * 100})));
    atmSeries.setData(points);
    state.lastAtmTime = points.length ? points[points.length - 1].time : 0;
    bump($("atm-iv"), "points", points.length);
  }

  // --- WebSocket ----------------------------------------------------------------------------------------------
  function topics() {
    const u = state.underlying, e = state.expiry;
    return [
      {kind: "chain", message: {channel: "chain", instrument_key: u, params: {expiry_date: e}}},
      {kind: "atm", message: {channel: "moneyness", instrument_key: u, params: {expiry_date: e, level: "ATM"}}},
      {kind: "candles", message: {channel: "computed", instrument_key: u}},
      {kind: "indicators", message: {channel: "indicators", instrument_key: u, params: {timeframe: state.timeframe}}},
    ];
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function subscribe(sub) {
    state.subs.set(sub.kind, sub);
    if (!state.socketUp) return;
    state.awaiting.push(sub);
    // seq: resume where this page left off (a fresh snapshot, then frames numbered on from it)
    send({type: "subscribe", ...sub.message, ...(sub.seq ? {seq: sub.seq} : {})});
  }

  function unsubscribe(kind) {
    const sub = state.subs.get(kind);
    state.subs.delete(kind);
    if (sub && sub.key) {
      state.byKey.delete(sub.key);
      send({type: "unsubscribe", subscription_key: sub.key});
    }
  }

  function retopic(kinds) {
    for (const sub of topics()) if (kinds.includes(sub.kind)) { unsubscribe(sub.kind); subscribe(sub); }
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/v2/dashboard/`);
    state.ws = ws;
    setConnection("connecting", "connecting…");
    ws.onmessage = (event) => onFrame(JSON.parse(event.data));
    ws.onclose = (event) => {
      state.socketUp = false;
      state.awaiting = [];
      state.byKey = new Map();
      if (event.code === 4401) { location.href = "/dashboard/login/?next=/"; return; }
      const wait = Math.min(1000 * 2 ** state.retry, 10000);
      state.retry += 1;
      setConnection("down", "disconnected");
      notice("socket", `Live connection lost (code ${event.code}); reconnecting in ${Math.round(wait / 1000)} s…`);
      setTimeout(connect, wait);
    };
  }

  function setConnection(mode, text) {
    $("connection").dataset.state = mode;
    $("connection").textContent = text;
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "authenticated":
        state.socketUp = true;
        state.retry = 0;
        state.lastData = Date.now();
        setConnection("live", "live");
        notice("socket", null);
        for (const sub of Array.from(state.subs.values())) subscribe(sub);
        return;
      case "subscribed": {
        const sub = state.awaiting.shift();
        if (sub && state.subs.get(sub.kind) === sub) { sub.key = frame.subscription_key; state.byKey.set(sub.key, sub); }
        return;
      }
      case "snapshot":
      case "data": {
        const sub = state.byKey.get(frame.subscription_key);
        if (!sub) return;
        sub.seq = frame.seq;
        if (frame.type === "data") { state.lastData = Date.now(); state.frames += 1; }
        route(sub.kind, frame);
        return;
      }
      case "error":
        if (state.awaiting.length && frame.code !== "rate_limited") state.awaiting.shift();
        notice("socket-error", `server: ${frame.message}`);
        return;
      default:
    }
  }

  function route(kind, frame) {
    const data = frame.data;
    if (data == null) return;
    if (kind === "chain") { applyChain(data, frame.type === "snapshot"); if (frame.type === "data") state.chainFrames += 1; }
    else if (kind === "atm") applyAtmIv(data, data.atm_iv && data.atm_iv.timestamp || frame.timestamp);
    else if (kind === "candles" && frame.type === "data") liveCandle(data);
    else if (kind === "indicators") liveIndicators(data);
  }

  setInterval(() => {
    const quiet = (Date.now() - state.lastData) / 1000;
    notice("idle", state.socketUp && quiet > IDLE_S
      ? `No new values for ${Math.round(quiet)} s: the feed looks idle (market closed, or the feed stopped)` : null);
  }, 1000);

  // --- health -------------------------------------------------------------------------------------------------
  function fillTable(id, rows) {
    $(id).innerHTML = "";
    for (const cells of rows) {
      const tr = $(id).insertRow();
      for (const cell of cells) tr.insertCell().textContent = cell;
    }
  }

  async function pollHealth() {
    try {
      const h = await getJSON("/dashboard/api/health");
      const before = state.health;
      if (before && h.time > before.time) {
        const dt = h.time - before.time;
        state.rate = Math.max(0, h.ticks_processed - before.ticks_processed) / dt;
        $("ticks-per-s").textContent = state.rate.toFixed(1);
        const n = h.latency_count - before.latency_count;
        $("latency").textContent = n > 0 ? `${((h.latency_sum_s - before.latency_sum_s) / n * 1000).toFixed(0)} ms` : "–";
      }
      state.health = h;
      $("ticks-processed").textContent = Math.round(h.ticks_processed).toLocaleString("en-IN");
      $("dead-lettered").textContent = Math.round(h.ticks_dead_lettered);
      $("ws-connections").textContent = Math.round(h.websocket_connections);
      const streams = Array.from(new Set([...Object.keys(h.stream_lag), ...Object.keys(h.stream_pending),
                                          ...Object.keys(h.dead_letters)])).sort();
      fillTable("streams", streams.map((s) => [s, h.stream_lag[s] ?? "–", h.stream_pending[s] ?? "–", h.dead_letters[s] ?? "–"]));
      fillTable("queues", Object.entries(h.queue_length).sort().map(([q, n]) => [q, n]));
      const errors = Object.entries(h.computation_errors).sort();
      fillTable("errors", errors.length ? errors.map(([c, n]) => [c, n]) : [["none", 0]]);
      fillTable("configs", h.configs.map((c) => [c.name + (c.enabled ? "" : " (off)"),
        c.last_run_at ? new Date(c.last_run_at).toLocaleTimeString() : "never", c.last_run_status || "–", c.last_run_records]));
      notice("health", null);
    } catch (error) {
      failed("health")(error);
    }
  }

  // --- pickers and start ----------------------------------------------------------------------------------------
  async function loadChains() {
    const body = await getJSON("/dashboard/api/chains");
    if (!body.chains.length) {
      notice("chains", "No option chains yet: waiting for the feed");
      setTimeout(() => loadChains().catch(failed("chains")), 3000);
      return;
    }
    notice("chains", null);
    state.chains = body.chains;
    const under = $("underlying");
    under.innerHTML = "";
    for (const c of body.chains) under.add(new Option(c.underlying, c.underlying));
    const preferred = body.chains.find((c) => c.underlying.includes("@NIFTY@")) || body.chains[0];
    under.value = preferred.underlying;
    chooseUnderlying(preferred.underlying);
  }

  function chooseUnderlying(key) {
    state.underlying = key;
    const chain = state.chains.find((c) => c.underlying === key);
    const expiry = $("expiry");
    expiry.innerHTML = "";
    for (const e of chain.expiries) expiry.add(new Option(e, e));
    state.expiry = chain.expiries[0];
    expiry.value = state.expiry;
    state.rows = new Map();
    renderChain();
    retopic(["chain", "atm", "candles", "indicators"]);
    loadCandles().catch(failed("candles"));
    loadAtmIv().catch(failed("ATM IV"));
  }

  $("underlying").addEventListener("change", (e) => chooseUnderlying(e.target.value));
  $("expiry").addEventListener("change", (e) => {
    state.expiry = e.target.value;
    state.rows = new Map();
    state.spot = null;
    centred = false;
    renderChain();
    retopic(["chain", "atm"]);
    loadAtmIv().catch(failed("ATM IV"));
  });
  $("timeframe").addEventListener("change", (e) => {
    state.timeframe = e.target.value;
    retopic(["indicators"]);
    loadCandles().catch(failed("candles"));
  });
  for (const box of document.querySelectorAll('input[name="indicator"]')) {
    box.addEventListener("change", () => loadIndicators().catch(failed("indicators")));
  }

  connect();
  loadChains().catch(failed("chains"));
  pollHealth();
  setInterval(pollHealth, 2000);
})();
