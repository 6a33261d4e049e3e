// HealthMesh console, mutual aid: send the three CSV files and the policy to the API (with a
// progress indicator while the solver works), show problems next to the file or field that caused
// them, and draw the plan: totals, a Chart.js line chart per member backed by a table, and the
// transfers. Chart.js is the vendored copy: nothing comes from another host.
(function () {
  "use strict";

  // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
  const COLOURS = { demand: "#000000", supply: "#0072B2", shortfall: "#D55E00", without: "#E69F00" };
  const FILES = ["demand", "supply", "distances"];
  const TRANSFERS_SHOWN = 1000;
  const number = (value, digits) => (value === null || value === undefined
    ? "—" : Number(value).toLocaleString("en", { maximumFractionDigits: digits === undefined ? 1 : digits }));
  const percent = (value) => (value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)} %`);

  const { el, table } = window.HealthMesh;  // shared DOM helpers (console.js)

  function policyOf(form) {
    const out = {};
    form.querySelectorAll("[data-policy] [name]").forEach((input) => {
      if (input.type === "radio") { if (input.checked) out[input.name] = input.value; return; }
      if (input.type === "checkbox") { out[input.name] = input.checked; return; }
      if (input.value === "") return;
      out[input.name] = input.dataset.type === "int" ? parseInt(input.value, 10)
        : input.dataset.type === "float" ? parseFloat(input.value) : input.value;
    });
    return out;
  }

  // Show an RFC 9457 problem: each error in its file's (or field's) slot, with the CSV line.
  function showProblem(form, problem) {
    const hm = window.HealthMesh;
    const errors = (problem.errors || []).map((error) => {
      const field = String(error.field || "");
      const column = field.includes(".") ? field.split(".").slice(1).join(".") : "";
      const where = [error.line ? `line ${error.line}` : "", column ? `column ${column}` : ""].filter(Boolean).join(", ");
      const base = field.split(".")[0].split("[")[0];
      const input = form.querySelector(`[name="${CSS.escape(base)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      return { field, message: `${where ? `${where}: ` : ""}${error.message}` };
    });
    hm.showProblem(form, { ...problem, errors });
    // one problem per line in a file's slot
    form.querySelectorAll("[data-file-slot] [data-error-for]").forEach((slot) => {
      const mine = errors.filter((e) => e.field.split(".")[0] === slot.dataset.errorFor);
      if (mine.length) slot.textContent = mine.map((e) => e.message).join("\n");
    });
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }

  function busy(form) {
    const box = form.querySelector("[data-progress]");
    const text = form.querySelector("[data-progress-text]");
    const button = form.querySelector("[type=submit]");
    const started = Date.now();
    if (button) button.disabled = true;
    if (box) box.hidden = false;
    form.setAttribute("aria-busy", "true");
    const tick = () => { if (text) text.textContent = `Planning… ${Math.round((Date.now() - started) / 1000)} s`; };
    tick();
    const timer = window.setInterval(tick, 1000);
    return () => {
      window.clearInterval(timer);
      if (box) box.hidden = true;
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
    };
  }

  function setStatus(form, message, kind) {
    const status = form.querySelector("[data-form-status]");
    if (status) { status.textContent = message; status.className = kind; }
  }

  function renderTotals(section, plan) {
    const t = plan.totals;
    const s = plan.solver;
    const removed = t.shortfall_without_sharing > 0 ? 1 - t.shortfall / t.shortfall_without_sharing : null;
    const rows = [
      ["Members × periods", { text: `${plan.members.length} × ${plan.periods.length}`, num: true }],
      ["Demand", { text: number(t.demand), num: true }],
      ["Shortfall without sharing", { text: number(t.shortfall_without_sharing), num: true }],
      ["Shortfall with sharing", { text: number(t.shortfall), num: true }],
      ["Shortfall removed", { text: percent(removed), num: true }],
      ["Largest unmet share (with / without sharing)", { text: `${percent(t.largest_unmet_share)} / ${percent(t.largest_unmet_share_without_sharing)}`, num: true }],
      ["Transfers", { text: number(t.transfers, 0), num: true }],
      ["Units moved", { text: number(t.units_moved), num: true }],
      ["Distance (units × distance)", { text: number(t.unit_distance), num: true }],
      ["Released from the reserve", { text: number(t.reserve_released), num: true }],
      ["Solver", { text: `${s.kind}, ${s.status}, ${number(s.solve_seconds, 3)} s`, num: true }],
      ["LP bound (shortfall)", { text: number(s.lp_bound, 3), num: true }],
    ];
    if (s.kind === "MIP") {
      rows.push(["MIP bound", { text: number(s.mip_bound, 3), num: true }]);
      rows.push(["MIP gap", { text: s.mip_gap === null || s.mip_gap === undefined ? "—" : Number(s.mip_gap).toExponential(1), num: true }]);
    }
    const objective = plan.policy.objective === "equity" ? "equity (largest unmet share first)" : "least total shortfall";
    section.querySelector("[data-totals]").replaceChildren(
      table(`Totals — objective: ${objective}`, ["Figure", { text: "Value", num: true }], rows, "mutual-aid-totals"));
  }

  function lineChart(canvas, periods, rows) {
    if (!window.Chart) return null;
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    const series = (label, key, colour, dash) => ({
      label, data: rows.map((row) => row[key]), borderColor: colour, backgroundColor: colour,
      borderDash: dash || [], pointRadius: periods.length > 40 ? 0 : 2, borderWidth: 2, tension: 0,
    });
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: periods,
        datasets: [
          series("Demand", "demand", COLOURS.demand),
          series("Supply held", "supply", COLOURS.supply),
          series("Shortfall with sharing", "shortfall", COLOURS.shortfall),
          series("Shortfall without sharing", "shortfall_without_sharing", COLOURS.without, [6, 4]),
        ],
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true }, x: { ticks: { maxTicksLimit: 8 } } },
      },
    });
  }

  function renderMembers(section, plan) {
    const byMember = new Map(plan.members.map((m) => [m, []]));
    (plan.rows || []).forEach((row) => { if (byMember.has(row.member)) byMember.get(row.member).push(row); });
    const grid = section.querySelector("[data-member-charts]");
    grid.replaceChildren();
    plan.members.forEach((member, index) => {
      const rows = byMember.get(member).slice().sort((a, b) => (a.period < b.period ? -1 : 1));
      const id = `member-chart-${index}`;
      const short = rows.reduce((sum, r) => sum + r.shortfall, 0);
      const without = rows.reduce((sum, r) => sum + r.shortfall_without_sharing, 0);
      const canvas = el("canvas", { id, role: "img", "aria-labelledby": `${id}-caption`, "aria-describedby": `${id}-note` },
        [`${member}: the data is in the table below.`]);
      const data = table(`${member}: per period`,
        ["Period", { text: "Demand", num: true }, { text: "Supply held", num: true }, { text: "Shortfall", num: true },
          { text: "Without sharing", num: true }, { text: "Received", num: true }, { text: "Sent", num: true },
          { text: "From reserve", num: true }],
        rows.map((r) => [r.period, ...[r.demand, r.supply, r.shortfall, r.shortfall_without_sharing, r.received, r.sent, r.released]
          .map((v) => ({ text: number(v), num: true }))]),
        "member-table");
      const figure = el("figure", { "data-member": member, "data-testid": "member-chart" }, [
        el("figcaption", { id: `${id}-caption`, text: member }),
        el("p", { id: `${id}-note`, class: "hint", text: `Shortfall ${number(short)} with sharing, ${number(without)} without.` }),
        el("div", { class: "chart-box member" }, [canvas]),
        el("details", {}, [el("summary", { text: `Data: ${member}` }), el("div", { class: "scroll" }, [data])]),
      ]);
      grid.append(figure);
      lineChart(canvas, rows.map((r) => r.period), rows);
    });
  }

  function renderTransfers(section, plan) {
    const box = section.querySelector("[data-transfers]");
    const list = plan.transfers.slice().sort((a, b) => (a.period < b.period ? -1 : a.period > b.period ? 1 : 0));
    if (!list.length) {
      box.replaceChildren(el("p", { "data-testid": "no-transfers", text: "No transfers: sharing would not reduce the shortfall." }));
      return;
    }
    const shown = list.slice(0, TRANSFERS_SHOWN);
    const caption = list.length > shown.length
      ? `The first ${shown.length} of ${list.length} transfers, by period sent`
      : `${list.length} ${list.length === 1 ? "transfer" : "transfers"}, by period sent`;
    box.replaceChildren(table(caption,
      ["Period", "From", "To", { text: "Units", num: true }, "Arrives", { text: "Distance", num: true }],
      shown.map((t) => [t.period, t.source, t.target, { text: number(t.units, 2), num: true }, t.arrives, { text: number(t.distance), num: true }]),
      "transfers"));
  }

  function renderPlan(plan) {
    const section = document.getElementById("mutual-aid-results");
    section.hidden = false;
    renderTotals(section, plan);
    renderMembers(section, plan);
    renderTransfers(section, plan);
    renderApproval(section, plan);
  }

  // A stored plan: its first period's moves, and (for an approver) the button that ships them.
  function renderApproval(section, plan) {
    const box = section.querySelector("[data-approval]");
    box.hidden = !plan.id;
    if (!plan.id) return;
    box.dataset.planId = plan.id;
    box.querySelector("[data-stored]").textContent = `Stored as mutual-aid plan ${plan.id} (${plan.status}), product ${plan.product}.`;
    const moves = plan.first_period_moves || [];
    box.querySelector("[data-first-moves]").replaceChildren(moves.length
      ? table(`First period (${plan.periods[0]}): whole units to move`, ["From", "To", { text: "Units", num: true }],
        moves.map((m) => [m.from, m.to, { text: number(m.units, 0), num: true }]), "first-moves")
      : el("p", { text: "Nothing moves in the first period." }));
    box.querySelector("[data-approval-status]").textContent = "";
    box.querySelector("[data-shipments]").replaceChildren();
    const button = box.querySelector("[data-approve]");
    if (button) button.disabled = false;
  }

  async function approve(button) {
    const hm = window.HealthMesh;
    const box = button.closest("[data-approval]");
    const status = box.querySelector("[data-approval-status]");
    button.disabled = true;
    const result = await hm.api("POST", `/api/v1/mutual-aid/plans/${box.dataset.planId}/approve`);
    if (!result.ok) {
      const problem = typeof result.data === "object" ? result.data : { detail: result.data };
      status.className = "error";
      status.textContent = [problem.detail, ...(problem.errors || []).map((e) => e.message)].join(" ");
      button.disabled = false;
      return;
    }
    status.className = "ok";
    status.textContent = `Approved: ${result.data.shipments.length} shipments planned.`;
    box.querySelector("[data-shipments]").replaceChildren(table("Shipments planned",
      ["Shipment", "From", "To", { text: "Units", num: true }],
      result.data.shipments.map((s) => [
        s.code, s.source, s.destination,
        { text: number(s.units, 0), num: true }]),
      "approved-shipments"));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-approve]");
    if (button) approve(button);
  });

  async function submit(form) {
    const hm = window.HealthMesh;
    hm.clearErrors(form);
    const missing = FILES.filter((name) => !(form.elements[name].files || []).length);
    if (missing.length) {
      showProblem(form, {
        detail: "Choose the three files.",
        errors: missing.map((name) => ({ field: name, message: "a CSV file is required" })),
      });
      return;
    }
    const body = new FormData();
    FILES.forEach((name) => body.append(name, form.elements[name].files[0]));
    body.append("policy", JSON.stringify(policyOf(form)));
    if (form.elements.save && form.elements.save.checked) {
      body.append("save", "true");
      body.append("product", form.elements.product.value);
    }
    const done = busy(form);
    try {
      const result = await hm.api("POST", "/api/v1/mutual-aid/plans", body);
      if (!result.ok) {
        showProblem(form, typeof result.data === "object" ? result.data : { detail: result.data });
        return;
      }
      renderPlan(result.data);
      const t = result.data.totals;
      setStatus(form, `Planned: shortfall ${number(t.shortfall)} with sharing, ${number(t.shortfall_without_sharing)} without.`, "ok");
      document.getElementById("results-heading").focus();
    } catch (error) {
      hm.showProblem(form, { detail: `Could not reach the platform: ${error}` });
    } finally {
      done();
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-mutual-aid]")) { event.preventDefault(); submit(form); }
  });

  window.HealthMeshMutualAid = { renderPlan, policyOf };
})();
