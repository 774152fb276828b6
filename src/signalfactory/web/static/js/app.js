// Signal Factory dashboard: behaviour shared by every page. No inline script anywhere
// (the Content-Security-Policy allows scripts from /static only).
(function () {
  "use strict";

  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // -- times: UTC in the markup and on hover, the browser's zone on screen --------------
  const fmt = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit"});
  function localTimes(root) {
    for (const el of (root || document).querySelectorAll("time[datetime]")) {
      if (el.dataset.local) continue;
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) continue;
      el.title = el.title || d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
      el.textContent = fmt.format(d);
      el.dataset.local = "1";
    }
  }

  // -- calling the JSON API with the session cookie and the CSRF token ----------------
  async function api(method, url, body) {
    const headers = {"Accept": "application/json", "X-CSRF-Token": csrf()};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url, {method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)});
    let data = {};
    if (res.status !== 204) { try { data = await res.json(); } catch (e) { data = {}; } }
    return {ok: res.ok, status: res.status, data};
  }

  // -- forms that post to the API: errors next to the field they concern -------------
  function collect(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button") continue;
      const kind = el.dataset.kind || "text";
      if (kind === "bool") { if (el.checked) body[el.name] = true; continue; }
      const value = el.value.trim();
      if (value === "") continue;  // unset: the API's default applies
      if (kind === "number") body[el.name] = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value) ? Number(value) : value;
      else if (kind === "list") body[el.name] = value.split(/[\s,]+/).filter(Boolean);
      else body[el.name] = el.value;
    }
    return body;
  }

  function errorSlot(form, name) {
    const field = form.elements.namedItem(name);
    if (!field || !field.id) return null;
    let slot = form.querySelector('[data-error-for="' + name + '"]');
    if (!slot) {
      slot = document.createElement("p");
      slot.className = "field-error";
      slot.setAttribute("role", "alert");
      slot.dataset.errorFor = name;
      slot.id = field.id + "-error";
      (field.closest(".field") || field.parentNode).appendChild(slot);
    }
    field.setAttribute("aria-invalid", "true");
    const described = (field.getAttribute("aria-describedby") || "").split(" ");
    if (!described.includes(slot.id)) field.setAttribute("aria-describedby", (described.join(" ") + " " + slot.id).trim());
    return slot;
  }

  function clearErrors(form) {
    for (const el of form.querySelectorAll("[data-error-for]")) { el.textContent = ""; el.hidden = true; }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const general = form.querySelector(".form-error");
    if (general) { general.textContent = ""; general.hidden = true; }
  }

  // The field a problem concerns: a schema error's location, the rule the domain named,
  // a rule text's position, or the form as a whole.
  function fieldsOf(form, problem) {
    const out = [];
    const has = (n) => n && form.elements.namedItem(String(n));
    for (const e of problem.errors || []) {
      const loc = (e.loc || []).filter((p) => typeof p === "string" && p !== "body");
      const name = loc.find(has);
      if (name) out.push([name, e.msg]);
    }
    if (!out.length && has(problem.rule)) out.push([problem.rule, problem.detail]);
    if (!out.length && problem.position != null && has("rule")) out.push(["rule", problem.detail]);
    if (!out.length && problem.quota) out.push([null, problem.detail]);
    if (!out.length) {  // a domain error names its field in words: the form's hints say which
      const detail = String(problem.detail || "").toLowerCase();
      const hints = JSON.parse(form.dataset.errorHints || "{}");
      const hinted = Object.keys(hints).find((text) => detail.includes(text));
      const option = /--([a-z][a-z-]*)/.exec(detail);  // the CLI's spelling: --size, --from
      if (hinted && has(hints[hinted])) out.push([hints[hinted], problem.detail]);
      else if (option && has(option[1].replace(/-/g, "_"))) out.push([option[1].replace(/-/g, "_"), problem.detail]);
    }
    return out.length ? out : [[form.dataset.errorField || null, problem.detail]];
  }

  function showProblem(form, problem, status) {
    const detail = problem.detail || ("the request failed (HTTP " + status + ")");
    for (const [name, message] of fieldsOf(form, Object.assign({detail}, problem))) {
      const slot = name ? errorSlot(form, name) : null;
      const target = slot || form.querySelector(".form-error");
      if (!target) continue;
      target.textContent = message || detail;
      target.hidden = false;
    }
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  function fill(template, data) {
    return template.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(data[k] == null ? "" : data[k]));
  }

  async function submitApiForm(form) {
    clearErrors(form);
    const button = form.querySelector('[type="submit"]');
    if (button) button.disabled = true;
    try {
      const res = await api(form.dataset.method || "POST", form.dataset.api, collect(form));
      if (!res.ok) { showProblem(form, res.data, res.status); return; }
      if (form.dataset.show) {
        const box = document.getElementById(form.dataset.show);
        for (const el of box.querySelectorAll("[data-field]")) el.textContent = res.data[el.dataset.field] == null ? "–" : res.data[el.dataset.field];
        box.hidden = false;
        form.hidden = true;
        box.setAttribute("tabindex", "-1");  // focus moves to what must be copied now
        box.focus();
      } else if (form.dataset.next) {
        location.assign(fill(form.dataset.next, res.data));
      } else {
        location.reload();
      }
    } catch (e) {
      showProblem(form, {detail: "the server could not be reached; retry"}, 0);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // -- buttons that call the API (cancel, retry, revoke, replay) ----------------------
  async function runAction(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const slot = button.parentNode.querySelector(".action-error");
    if (slot) { slot.hidden = true; slot.textContent = ""; }
    button.disabled = true;
    const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    const res = await api(button.dataset.method || "POST", button.dataset.apiAction, body);
    button.disabled = false;
    if (!res.ok) {
      if (res.status === 401) { location.assign("/signin?next=" + encodeURIComponent(location.pathname)); return; }
      if (slot) { slot.textContent = res.data.detail || ("failed (HTTP " + res.status + ")"); slot.hidden = false; }
      return;
    }
    location.reload();
  }

  // -- a confirmation step: a button opens a hidden form for one target (the kill switch
  // engage form for a scope); only that form's own submit button calls the API ---------
  function openForm(button) {
    const form = document.getElementById(button.dataset.openForm);
    const values = JSON.parse(button.dataset.values || "{}");
    for (const [name, value] of Object.entries(values)) {
      const field = form.elements.namedItem(name);
      if (field) field.value = value;
    }
    for (const el of form.querySelectorAll("[data-field=label]")) el.textContent = button.dataset.label || "";
    clearErrors(form);
    form.hidden = false;
    form._opener = button;
    const first = [...form.elements].find((el) => el.type !== "hidden" && !el.disabled);
    (first || form).focus();
  }

  function closeForm(button) {
    const form = document.getElementById(button.dataset.closeForm);
    form.hidden = true;
    if (form._opener) form._opener.focus();
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.matches && form.matches("form[data-api]")) { ev.preventDefault(); submitApiForm(form); }
  });
  document.addEventListener("click", (ev) => {
    const button = ev.target.closest && ev.target.closest("button[data-api-action]");
    if (button) { ev.preventDefault(); runAction(button); }
    const opener = ev.target.closest && ev.target.closest("button[data-open-form]");
    if (opener) { ev.preventDefault(); openForm(opener); }
    const closer = ev.target.closest && ev.target.closest("button[data-close-form]");
    if (closer) { ev.preventDefault(); closeForm(closer); }
    const toggle = ev.target.closest && ev.target.closest(".menu-toggle");
    if (toggle) {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      document.getElementById(toggle.getAttribute("aria-controls")).classList.toggle("open", open);
    }
  });
  document.addEventListener("htmx:afterSwap", (ev) => localTimes(ev.target));
  document.addEventListener("DOMContentLoaded", () => localTimes(document));

  window.SF = {api, csrf, localTimes, showProblem, clearErrors};
})();
