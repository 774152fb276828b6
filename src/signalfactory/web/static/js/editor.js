// The rule editor: validation as you type through POST /api/v1/strategies/validate, with the
// error's position shown under the offending line; a preview of the rule's signals on a
// symbol through POST /api/v1/strategies/preview.
(function () {
  "use strict";
  let timer = null, sequence = 0;
  const hook = window.__sfEditor = {validations: 0, valid: null, position: null};

  function where(text, position) {
    const before = text.slice(0, position);
    const line = before.split("\n").length;
    const column = position - before.lastIndexOf("\n");
    const lineText = text.split("\n")[line - 1] || "";
    return {line, column, caret: lineText + "\n" + " ".repeat(Math.max(0, column - 1)) + "^"};
  }

  async function validate(area) {
    const mine = ++sequence;
    const status = document.querySelector("[data-rule-status]");
    const marker = document.querySelector("[data-rule-where]");
    const text = area.value;
    if (!text.trim()) { status.textContent = ""; marker.hidden = true; return; }
    const res = await window.SF.api("POST", area.dataset.validate, {rule: text});
    if (mine !== sequence) return;  // an older answer: the text changed since
    hook.validations += 1;
    if (res.ok) {
      hook.valid = true; hook.position = null;
      status.textContent = "Valid · look-back " + res.data.lookback + " bars";
      status.className = "rule-status ok";
      marker.hidden = true;
      area.removeAttribute("aria-invalid");
      return;
    }
    hook.valid = false;
    const position = res.data.position;
    hook.position = position == null ? null : position;
    area.setAttribute("aria-invalid", "true");
    status.className = "rule-status bad";
    if (position != null) {
      const at = where(text, position);
      status.textContent = "Line " + at.line + ", column " + at.column + ": " + (res.data.detail || "invalid");
      marker.textContent = at.caret;
      marker.hidden = false;
    } else {
      status.textContent = res.data.detail || "invalid";
      marker.hidden = true;
    }
  }

  async function preview(section) {
    const area = document.getElementById("rule");
    const symbol = document.getElementById("preview-symbol").value.trim();
    const error = section.querySelector("[data-preview-error]");
    const summary = section.querySelector("[data-preview-summary]");
    const tf = document.querySelector('[name="timeframe"]');
    error.hidden = true;
    summary.textContent = "Evaluating…";
    const res = await window.SF.api("POST", section.dataset.preview,
      {rule: area.value, symbol, timeframe: (tf && tf.value.trim()) || "1d"});
    if (!res.ok) {
      summary.textContent = "";
      error.textContent = res.data.detail || ("failed (HTTP " + res.status + ")");
      error.hidden = false;
      return;
    }
    const d = res.data;
    summary.textContent = d.signals.length + " signal(s) on the last " + d.bars.length + " " + d.timeframe + " bars of " + d.symbol;
    const target = document.getElementById("chart-preview");
    target.hidden = false;  // sized before the chart measures it
    window.SFCharts.draw(target, {kind: "price", intraday: false,
      bars: d.bars.map((b) => [b.time, b.open, b.high, b.low, b.close]), overlays: [],
      markers: d.signals.map((s) => [s.time, s.side])});
  }

  document.addEventListener("DOMContentLoaded", () => {
    const area = document.querySelector("textarea[data-validate]");
    if (area) {
      area.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => validate(area), 250); });
      validate(area);
    }
    const section = document.querySelector("[data-preview]");
    if (section) section.querySelector("[data-preview-run]").addEventListener("click", () => preview(section));
  });
})();
