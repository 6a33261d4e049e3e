// Shipment page forms that console.js's generic JSON forms cannot express: the receipt (nested
// lines with rejections by reason, sent with an Idempotency-Key), the logger upload (its problems
// listed by line), and local date-times sent as UTC.
(function () {
  "use strict";
  const H = () => window.HealthMesh;

  // <input type="datetime-local" data-utc-for="hidden-id">: the hidden field carries the instant
  // in UTC (the API reads a date-time without offset as UTC, not as the viewer's local time).
  document.addEventListener("input", (event) => {
    const local = event.target.closest("[data-utc-for]");
    if (local) {
      const hidden = document.getElementById(local.dataset.utcFor);
      const when = local.value ? new Date(local.value) : null;
      hidden.value = when && !Number.isNaN(when.getTime()) ? when.toISOString() : "";
    }
    const line = event.target.closest("fieldset.receipt-line");
    if (line) tally(line);
  });

  function count(input) {
    const value = parseInt(input.value, 10);
    return Number.isNaN(value) ? 0 : value;
  }

  // "Accounted for: 298 of 300", marked while the line does not add up.
  function tally(fieldset) {
    const shipped = parseInt(fieldset.dataset.quantity, 10);
    let total = 0;
    fieldset.querySelectorAll('input[type="number"]').forEach((input) => { total += count(input); });
    const out = fieldset.querySelector("[data-tally]");
    out.textContent = `Accounted for: ${total.toLocaleString("en")} of ${shipped.toLocaleString("en")}`;
    out.classList.toggle("off", total !== shipped);
  }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return `receipt-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  function receiptBody(form) {
    const body = { lines: [] };
    form.querySelectorAll("fieldset.receipt-line").forEach((fieldset) => {
      const index = fieldset.dataset.index;
      const rejected = [];
      fieldset.querySelectorAll("[data-reason]").forEach((input) => {
        const units = count(input);
        if (units > 0) rejected.push({ reason: input.dataset.reason, quantity: units });
      });
      body.lines.push({
        line_id: parseInt(fieldset.dataset.lineId, 10),
        accepted: count(fieldset.querySelector(`[name="lines[${index}].accepted"]`)),
        rejected,
      });
    });
    for (const name of ["receiver", "place", "note", "received_at"]) {
      const field = form.elements.namedItem(name);
      if (field && field.value.trim()) body[name] = field.value.trim();
    }
    const decision = form.querySelector('[name="excursion_decision"]:checked');
    if (decision) body.excursion_decision = decision.value;
    return body;
  }

  // After a refusal: the rejection fields of a line named in an error are marked too, and focus
  // goes to the first field in error (or the form's status line).
  function markAndFocus(form, problem) {
    (problem.errors || []).forEach((error) => {
      const match = /^lines\[(\d+)\]\.rejected/.exec(String(error.field || ""));
      if (match) {
        form.querySelectorAll(`fieldset[data-index="${match[1]}"] [data-reason]`)
          .forEach((input) => input.setAttribute("aria-invalid", "true"));
      }
    });
    const first = form.querySelector('[aria-invalid="true"]');
    const status = form.querySelector("[data-form-status]");
    if (first) first.focus();
    else if (status) { status.setAttribute("tabindex", "-1"); status.focus(); }
  }

  function problemOf(result) {
    return typeof result.data === "object" && result.data ? result.data : { detail: String(result.data) };
  }

  async function submitReceipt(form) {
    form.dataset.key = form.dataset.key || newKey();
    const result = await H().api("POST", form.dataset.receipt, receiptBody(form), { "Idempotency-Key": form.dataset.key });
    if (!result.ok) {
      delete form.dataset.key; // a corrected receipt is a different request
      const problem = problemOf(result);
      H().showProblem(form, problem);
      markAndFocus(form, problem);
      return;
    }
    const status = form.querySelector("[data-form-status]");
    status.textContent = "Receipt recorded.";
    status.className = "ok";
    window.location.reload();
  }

  async function submitLog(form) {
    const list = form.querySelector("[data-problems]");
    list.replaceChildren();
    const result = await H().api("POST", form.dataset.logUpload, new FormData(form));
    const status = form.querySelector("[data-form-status]");
    if (!result.ok) {
      const problem = problemOf(result);
      const errors = problem.errors || [];
      H().showProblem(form, { ...problem, errors: errors.filter((e) => e.line === undefined || e.line === null) });
      errors.filter((e) => e.line !== undefined && e.line !== null).forEach((e) => {
        const item = document.createElement("li");
        item.textContent = `Line ${e.line}, ${e.field}: ${e.message}`;
        list.appendChild(item);
      });
      form.querySelector('input[type="file"]').setAttribute("aria-invalid", "true");
      markAndFocus(form, problem);
      return;
    }
    const log = result.data;
    status.textContent = `Uploaded: ${log.readings} readings, ${log.breach ? "an excursion beyond tolerance" : "within tolerance"}.`;
    status.className = "ok";
    window.location.reload();
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-receipt], form[data-log-upload]");
    if (!form) return;
    event.preventDefault();
    H().clearErrors(form);
    const button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      if (form.dataset.receipt) await submitReceipt(form);
      else await submitLog(form);
    } catch (error) {
      H().showProblem(form, { detail: `Could not reach the platform: ${error}` });
    } finally {
      if (button) button.disabled = false;
    }
  });
})();
