// HealthMesh console: the glue between server-rendered pages and the REST API.
// Written here rather than pulled from a framework: it is small, and the console must work with
// no internet (no CDN, no request to another host).
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Every htmx request carries the session's CSRF token (the API refuses writes without it).
  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    const summary = form.querySelector("[data-form-status]");
    if (summary) { summary.textContent = ""; summary.className = ""; }
  }

  // Show an RFC 9457 problem next to the fields it names (and its detail at the form's top).
  function showProblem(form, problem) {
    const summary = form.querySelector("[data-form-status]");
    if (summary) { summary.textContent = problem.detail || problem.title || "Refused"; summary.className = "error"; }
    (problem.errors || []).forEach((error) => {
      const field = String(error.field || "");
      const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`)
        || form.querySelector(`[data-error-for="${CSS.escape(field.split(".")[0].split("[")[0])}"]`);
      const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      if (slot) slot.textContent = (slot.textContent ? slot.textContent + " " : "") + error.message;
      else if (summary) summary.textContent += ` ${field}: ${error.message}.`;
    });
  }

  // Read a form into JSON: data-type="int|float|bool|json|list" converts, empty fields are left out.
  function formJson(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.type === "submit") continue;
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked && el.dataset.type !== "bool") continue;
      let value = el.type === "checkbox" && el.dataset.type === "bool" ? el.checked : el.value;
      if (value === "" ) continue;
      switch (el.dataset.type) {
        case "int": value = parseInt(value, 10); break;
        case "float": value = parseFloat(value); break;
        case "json": value = JSON.parse(value); break;
        case "list": value = String(value).split(",").map((s) => s.trim()).filter(Boolean); break;
      }
      out[el.name] = value;
    }
    return out;
  }

  async function api(method, url, body, extraHeaders) {
    const headers = Object.assign({ "X-CSRF-Token": csrf(), Accept: "application/json" }, extraHeaders || {});
    const init = { method, headers, credentials: "same-origin" };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(url, init);
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    return { ok: response.ok, status: response.status, data };
  }

  // <form data-api="/api/v1/..." data-method="POST" data-then="reload|redirect:/url|event:name">
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    clearErrors(form);
    const button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      const body = form.enctype === "multipart/form-data" ? new FormData(form) : formJson(form);
      const result = await api(form.dataset.method || "POST", form.dataset.api, body);
      if (!result.ok) { showProblem(form, typeof result.data === "object" ? result.data : { detail: result.data }); return; }
      const then = form.dataset.then || "reload";
      const status = form.querySelector("[data-form-status]");
      if (status) { status.textContent = form.dataset.done || "Done."; status.className = "ok"; }
      if (then === "reload") window.location.reload();
      else if (then.startsWith("redirect:")) window.location.assign(then.slice(9).replace("{id}", result.data && result.data.id));
      else if (then.startsWith("event:")) document.dispatchEvent(new CustomEvent(then.slice(6), { detail: result.data }));
    } catch (error) {
      showProblem(form, { detail: `Could not reach the platform: ${error}` });
    } finally {
      if (button) button.disabled = false;
    }
  });

  // Live updates: elements with data-live="topic1,topic2" reload their hx-get (hx-trigger="refresh")
  // when a change of that topic arrives on the platform's Server-Sent Events stream.
  function listen() {
    const live = document.querySelectorAll("[data-live]");
    if (!live.length || !window.EventSource) return;
    const topics = new Set();
    live.forEach((el) => el.dataset.live.split(",").forEach((t) => topics.add(t.trim())));
    const source = new EventSource("/api/v1/stream");
    const badge = () => document.querySelector("[data-live-status]");
    // The stream names each event by its topic (stock balance, need, ...): listen to those shown.
    topics.forEach((topic) => source.addEventListener(topic, () => {
      // looked up again at each event: a swap may have replaced the elements since the page loaded
      document.querySelectorAll("[data-live]").forEach((el) => {
        if (el.dataset.live.split(",").map((t) => t.trim()).includes(topic) && window.htmx) window.htmx.trigger(el, "refresh");
      });
      if (badge()) badge().textContent = `live · last change ${new Date().toLocaleTimeString()}`;
    }));
    source.onopen = () => { if (badge()) badge().textContent = "live"; };
    source.onerror = () => { if (badge()) badge().textContent = "live updates paused (reconnecting)"; };
  }

  // Build DOM for results drawn by page scripts (text only: nothing is parsed as HTML).
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (value === undefined || value === null || value === "") return;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => node.append(child));
    return node;
  }

  // A table from a caption, header cells and rows of cells; a cell is text or {text, num: true}.
  function table(caption, headers, rows, testid) {
    const head = el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : "", text: h.text || h })));
    const body = rows.map((cells) => el("tr", {}, cells.map((cell, index) => {
      const spec = typeof cell === "object" ? cell : { text: cell };
      return index === 0
        ? el("th", { scope: "row", text: spec.text })
        : el("td", { class: spec.num ? "num" : "", text: spec.text });
    })));
    return el("table", { class: "compact", "data-testid": testid }, [
      el("caption", { text: caption }), el("thead", {}, [head]), el("tbody", {}, body),
    ]);
  }

  // --- page behaviour (here, not inline in the templates: the Content-Security-Policy runs no
  // inline script or on*= handler, so an injected one cannot run either) ---------------------------

  // Sign out revokes the session on the server, then goes to the sign-in page.
  function signOut() {
    const button = document.getElementById("sign-out");
    if (!button) return;
    button.addEventListener("click", async () => {
      await api("POST", "/api/v1/auth/logout");
      window.location.assign("/console/login");
    });
  }

  // <select data-autosubmit> submits its (GET) form when changed.
  document.addEventListener("change", (event) => {
    const select = event.target.closest && event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.submit();
  });

  // The sign-in page: back to the page asked for (only a console page), or the overview.
  function signIn() {
    const form = document.getElementById("login");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const result = await api("POST", "/api/v1/auth/login", formJson(form));
      if (!result.ok) { showProblem(form, result.data); return; }
      const next = new URLSearchParams(window.location.search).get("next");
      window.location.assign(next && next.startsWith("/console") ? next : "/console");
    });
  }

  // The needs queue: a live refresh waits while someone is in the queue (writing a reason, on a
  // button or a link), and happens once they leave it. (A filter in hx-trigger would need eval,
  // which the CSP forbids.)
  function needsQueue() {
    const queue = document.getElementById("needs-queue");
    if (!queue) return;
    let changed = null;
    let stale = false;
    const busy = () => Boolean(queue.querySelector("details[open]")) || queue.contains(document.activeElement);
    document.addEventListener("htmx:beforeRequest", (event) => {
      const trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
      if (event.detail.elt !== queue || !trigger || trigger.type !== "refresh" || !busy()) return;
      event.preventDefault();
      stale = true;
    });
    const catchUp = () => setTimeout(() => {
      if (stale && !busy()) { stale = false; window.htmx.trigger(queue, "reload-queue"); }
    }, 0);
    queue.addEventListener("focusout", catchUp);
    document.addEventListener("need-changed", (event) => {
      const need = event.detail || {};
      const status = document.getElementById("needs-status");
      changed = need.id;
      status.textContent = need.status === "open"
        ? `Need #${need.id} endorsed: it is now open to regional allocation.`
        : need.status === "rejected"
          ? `Need #${need.id} rejected: ${need.rejection_reason}`
          : `Need #${need.id} is now ${String(need.status).replace(/_/g, " ")}.`;
      status.focus();
      window.htmx.trigger(queue, "reload-queue");
    });
    document.addEventListener("htmx:afterSwap", (event) => {
      if (event.target !== queue || changed === null) return;
      const row = queue.querySelector(`tr[data-need="${changed}"]`);
      if (row) row.classList.add("just-changed");
    });
    // Opening "Reject" puts the cursor in the reason field.
    document.addEventListener("toggle", (event) => {
      const details = event.target;
      if (!details.matches || !details.matches("#needs-queue details.reject")) return;
      if (details.open) details.querySelector("input[name=reason]")?.focus();
      else catchUp();
    }, true);
  }

  // Administration: the change form's target follows the chosen account (its role starts at the
  // current one); a CSV import lists every problem by line and field.
  function adminPage() {
    const form = document.getElementById("change-user");
    const pick = document.querySelector("[data-user-select]");
    if (form && pick) {
      pick.addEventListener("change", () => {
        const option = pick.selectedOptions[0];
        form.dataset.api = `/api/v1/users/${encodeURIComponent(pick.value)}`;
        form.querySelector('[name="role"]').value = option.dataset.role;
        document.getElementById("cu-current").textContent = `Now: ${option.dataset.role.replaceAll("_", " ")} (${option.dataset.scope})`;
        clearErrors(form);
      });
    }
    const upload = document.querySelector("form[data-import]");
    if (!upload) return;
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(upload);
      const list = upload.querySelector("[data-problems]");
      list.replaceChildren();
      const button = upload.querySelector("[type=submit]");
      button.disabled = true;
      try {
        const result = await api("POST", upload.dataset.import, new FormData(upload));
        if (result.ok) {
          const params = new URLSearchParams(window.location.search);
          params.set("created", result.data.created);
          params.set("updated", result.data.updated);
          window.location.assign(`?${params}#registry`);
          return;
        }
        const problem = typeof result.data === "object" && result.data ? result.data : { detail: String(result.data) };
        const errors = problem.errors || [];
        const lined = errors.filter((e) => e.line !== undefined && e.line !== null);
        showProblem(upload, { ...problem, errors: errors.filter((e) => !lined.includes(e)) });
        lined.forEach((e) => {
          const item = document.createElement("li");
          item.textContent = `Line ${e.line}, ${e.field}: ${e.message}`;
          list.appendChild(item);
        });
        upload.querySelector('input[type="file"]').setAttribute("aria-invalid", "true");
        upload.querySelector('input[type="file"]').focus();
      } catch (error) {
        showProblem(upload, { detail: `Could not reach the platform: ${error}` });
      } finally {
        button.disabled = false;
      }
    });
  }

  // console.js is deferred: the document is parsed when it runs.
  signOut();
  signIn();
  needsQueue();
  adminPage();
  document.addEventListener("DOMContentLoaded", listen);
  window.HealthMesh = { api, showProblem, clearErrors, formJson, el, table };
})();
