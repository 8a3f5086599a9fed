// trustmarket explorer: charts (uPlot), countdowns, and following new blocks. No framework, no network but
// this server: the page listens to /explorer/events (server-sent events) and, on a new block, fetches itself
// again and swaps <main>; where the stream fails it polls /explorer/head.
(function () {
  "use strict";
  var PALETTE = ["#1f6fd1", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207", "#4338ca",
                 "#be185d", "#374151", "#0369a1", "#65a30d"];
  var plots = [];

  function fmtX(kind) {
    return function (u, values) {
      return values.map(function (v) {
        if (v == null) return "";
        return v < 0 ? "initial" : String(v);
      });
    };
  }

  function drawCharts(root) {
    plots.forEach(function (p) { p.destroy(); });
    plots = [];
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("figure.chart").forEach(function (fig) {
      var holder = fig.querySelector(".plot");
      var script = fig.querySelector("script.chart-data");
      if (!holder || !script) return;
      var c = JSON.parse(script.textContent);
      var width = Math.max(holder.clientWidth || fig.clientWidth || 300, 260);
      var series = [{ label: c.x_label }];
      var data = [c.x];
      var hasY2 = false;
      c.series.forEach(function (s, i) {
        var color = PALETTE[i % PALETTE.length];
        if (s.axis === "y2") hasY2 = true;
        series.push({ label: s.label, stroke: color, width: 2, scale: s.axis,
                      points: { show: true, size: 5 },
                      paths: s.step && uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
                      value: function (u, v) { return v == null ? "-" : (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(4)); } });
        data.push(s.values);
      });
      var axes = [
        { label: c.x_label, values: fmtX(c.x_kind), stroke: "#4d5661", grid: { stroke: "#e5e8eb" } },
        { label: c.y_label, scale: "y", stroke: "#4d5661", grid: { stroke: "#e5e8eb" }, size: 60 }
      ];
      var scales = { x: { time: false } };
      if (c.y_range) scales.y = { range: c.y_range };
      if (hasY2) axes.push({ label: c.y2_label, scale: "y2", side: 1, stroke: "#4d5661", grid: { show: false }, size: 60 });
      var opts = { width: width, height: width < 500 ? 240 : 300, series: series, axes: axes, scales: scales,
                   legend: { live: false }, cursor: { drag: { x: false, y: false } } };
      if (c.x.length) {
        opts.axes[0].splits = function () { return c.x; };
      }
      plots.push(new uPlot(opts, data, holder));
    });
  }

  // Countdowns: the server says how many seconds remain by the chain's clock; count from page load.
  var countdownTimer = null;
  function fmtDuration(s) {
    s = Math.max(Math.floor(s), 0);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (d) return d + " d " + two(h) + " h";
    if (h) return h + " h " + two(m) + " min";
    if (m) return m + " min " + two(r) + " s";
    return r + " s";
  }
  function startCountdowns(root) {
    var started = Date.now();
    var items = Array.prototype.map.call(root.querySelectorAll("time.countdown"), function (el) {
      return { el: el, remaining: parseFloat(el.getAttribute("data-remaining")) };
    });
    if (countdownTimer) clearInterval(countdownTimer);
    if (!items.length) return;
    function tick() {
      var elapsed = (Date.now() - started) / 1000;
      items.forEach(function (it) {
        var left = it.remaining - elapsed;
        it.el.textContent = left > 0 ? "in " + fmtDuration(left) : "ended " + fmtDuration(-left) + " ago";
      });
    }
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  // Following the chain.
  var current = null;
  var refreshing = false;
  var state = document.getElementById("live-state");
  var numberEl = document.getElementById("block-number");
  if (numberEl) current = parseInt(numberEl.getAttribute("data-block"), 10);

  function setState(text, stale) {
    if (!state) return;
    state.textContent = text;
    state.className = stale ? "stale" : "";
  }

  function refresh(number, force) {
    if (refreshing || (number === current && !force)) return;
    refreshing = true;
    var open = Array.prototype.map.call(document.querySelectorAll("details[open][id]"), function (d) { return d.id; });
    var openTables = Array.prototype.map.call(document.querySelectorAll("figure.chart"), function (f) {
      var d = f.querySelector("details"); return d && d.open ? f.id : null; }).filter(Boolean);
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var main = doc.getElementById("main");
        var live = doc.getElementById("live");
        if (!main) return;
        document.getElementById("main").innerHTML = main.innerHTML;
        if (live) document.getElementById("live").innerHTML = live.innerHTML;
        state = document.getElementById("live-state");
        numberEl = document.getElementById("block-number");
        current = numberEl ? parseInt(numberEl.getAttribute("data-block"), 10) : number;
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        openTables.forEach(function (id) { var f = document.getElementById(id); var d = f && f.querySelector("details"); if (d) d.open = true; });
        init(document);
        document.dispatchEvent(new CustomEvent("explorer:refreshed", { detail: { block: current } }));
      })
      .catch(function () { setState("offline", true); })
      .then(function () { refreshing = false; });
  }

  function poll() {
    setInterval(function () {
      fetch("/explorer/head", { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (h) { setState("live (polling)", false); refresh(h.number); })
        .catch(function () { setState("chain unreachable", true); });
    }, 5000);
  }

  function follow() {
    if (current === null || isNaN(current)) return;
    if (!window.EventSource) { poll(); return; }
    var failures = 0;
    var source = new EventSource("/explorer/events");
    source.addEventListener("block", function (e) {
      failures = 0;
      setState("live", false);
      refresh(JSON.parse(e.data).number);
    });
    source.addEventListener("unavailable", function () { setState("chain unreachable", true); });
    source.onerror = function () {
      failures += 1;
      if (failures >= 3) { source.close(); poll(); }
    };
  }

  // A verdict still being recomputed changes without a new block: look again shortly.
  var pendingTimer = null;
  function watchPending(root) {
    clearTimeout(pendingTimer);
    if (root.querySelector(".badge-queued, .badge-running")) {
      pendingTimer = setTimeout(function () { refresh(current, true); }, 3000);
    }
  }

  function init(root) {
    drawCharts(root);
    startCountdowns(root);
    watchPending(root);
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { drawCharts(document); }, 200);
  });
  init(document);
  follow();
})();
