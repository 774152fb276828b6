// Charts (TradingView lightweight-charts): candles with indicator overlays and signal
// markers, equity and drawdown lines. Data comes from <script type="application/json">
// blocks (never executed). window.__sfCharts reports what each chart drew, for tests.
(function () {
  "use strict";
  const registry = window.__sfCharts = window.__sfCharts || {};
  const OVERLAY_COLORS = ["#f59e0b", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"];
  const LINE_COLORS = ["#2563eb", "#9ca3af", "#dc2626", "#059669"];
  const dark = () => window.matchMedia("(prefers-color-scheme: dark)").matches;

  function theme() {
    const d = dark();
    // attributionLogo off: the logo comes with an inline <style> the CSP refuses; the
    // attribution the licence's NOTICE asks for is the page footer's link instead.
    return {layout: {background: {color: d ? "#111827" : "#ffffff"}, textColor: d ? "#e5e7eb" : "#1f2937",
      attributionLogo: false},
      grid: {vertLines: {color: d ? "#1f2937" : "#eef0f3"}, horzLines: {color: d ? "#1f2937" : "#eef0f3"}}};
  }

  const MARKERS = {
    long: {position: "belowBar", shape: "arrowUp", color: "#16a34a", text: "long"},
    short: {position: "aboveBar", shape: "arrowDown", color: "#dc2626", text: "short"},
    exit: {position: "aboveBar", shape: "circle", color: "#6b7280", text: "exit"},
  };

  function draw(el, data) {
    const started = performance.now();
    if (el._chart) { el._chart.remove(); el._chart = null; }
    // Sized once from the element, then resized by our own observer: the library's
    // autoSize waits for a first ResizeObserver callback and paints twice.
    const chart = LightweightCharts.createChart(el, Object.assign({
      width: el.clientWidth, height: el.clientHeight,
      timeScale: {timeVisible: !!data.intraday, secondsVisible: false},
      localization: {timeFormatter: (t) => new Date(t * 1000).toLocaleString()},
    }, theme()));
    el._chart = chart;
    if (!el._observer) {
      el._observer = new ResizeObserver(() => {
        if (el._chart && el.clientWidth) el._chart.resize(el.clientWidth, el.clientHeight);
      });
      el._observer.observe(el);
    }
    const report = {series: 0, bars: 0, points: 0, markers: 0, ms: 0};
    if (data.kind === "price") {
      const candles = chart.addCandlestickSeries();
      candles.setData(data.bars.map((b) => ({time: b[0], open: b[1], high: b[2], low: b[3], close: b[4]})));
      report.series += 1;
      report.bars = data.bars.length;
      (data.overlays || []).forEach((o, i) => {
        const line = chart.addLineSeries({color: OVERLAY_COLORS[i % OVERLAY_COLORS.length], lineWidth: 1,
          priceLineVisible: false, lastValueVisible: false, title: o.name});
        line.setData(o.values.map((p) => ({time: p[0], value: p[1]})));
        report.series += 1;
        report.points += o.values.length;
      });
      const markers = (data.markers || []).map((m) => Object.assign({time: m[0]}, MARKERS[m[1]] || MARKERS.exit));
      candles.setMarkers(markers);
      report.markers = markers.length;
    } else {
      (data.series || []).forEach((s, i) => {
        const series = data.kind === "area"
          ? chart.addAreaSeries({lineColor: "#dc2626", topColor: "rgba(220,38,38,0.05)", bottomColor: "rgba(220,38,38,0.4)", title: s.name})
          : chart.addLineSeries({color: LINE_COLORS[i % LINE_COLORS.length], lineWidth: i ? 1 : 2, title: s.name,
            priceScaleId: s.scale || "right"});  // "left": a second axis (a bot's PnL beside its equity)
        if (s.scale === "left") chart.applyOptions({leftPriceScale: {visible: true}});
        series.setData(s.values.map((p) => ({time: p[0], value: p[1]})));
        report.series += 1;
        report.points += s.values.length;
      });
    }
    chart.timeScale().fitContent();
    report.ms = performance.now() - started;
    registry[el.id] = report;
    el.dataset.drawn = "yes";
    // the library paints on the next animation frame: the time until that frame is done
    requestAnimationFrame(() => requestAnimationFrame(() => {
      report.paintedMs = performance.now() - started;
      el.dataset.painted = "yes";
    }));
    return chart;
  }

  function drawAll(root) {
    for (const el of (root || document).querySelectorAll("[data-chart]")) {
      const source = document.getElementById(el.dataset.chart);
      if (source) draw(el, JSON.parse(source.textContent));
    }
  }

  window.SFCharts = {draw, drawAll};
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const el of document.querySelectorAll("[data-drawn]")) if (el._chart) el._chart.applyOptions(theme());
  });
})();
