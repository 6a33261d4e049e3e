// HealthMesh console, allocation pages: run a round (with a progress indicator while the engine
// works), compare policies side by side (tables, and Chart.js bar charts drawn from the same
// data), and draw a plan's fairness charts. Chart.js is the vendored copy: nothing comes from
// another host.
(function () {
  "use strict";

  // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
  const percent = (value) => (value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)} %`);
  const number = (value, digits) => (value === null || value === undefined
    ? "—" : Number(value).toLocaleString("en", { maximumFractionDigits: digits || 0 }));
  const groupLabel = (group) => String(group).replace(/_/g, " ");

  function members() {
    const node = document.getElementById("allocation-members");
    return node ? JSON.parse(node.textContent) : {};
  }

  const { el, table } = window.HealthMesh;  // shared DOM helpers (console.js)

  function barChart(canvas, labels, datasets, options) {
    if (!canvas || !window.Chart) return null;
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    const asPercent = !options || options.percent !== false;
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: datasets.map((set, index) => ({
          label: set.label,
          data: set.data,
          backgroundColor: set.color || PALETTE[index % PALETTE.length],
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: datasets.length > 1 },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${asPercent ? percent(item.raw) : number(item.raw, 3)}` } },
        },
        scales: {
          y: {
            beginAtZero: true,
            max: options && options.max !== undefined ? options.max : undefined,
            ticks: { callback: (value) => (asPercent ? `${Math.round(value * 100)} %` : value) },
          },
        },
      },
    });
  }

  // Show a running request: the progress bar, seconds elapsed, the button disabled.
  function busy(form, label) {
    const box = form.querySelector("[data-progress]");
    const text = form.querySelector("[data-progress-text]");
    const button = form.querySelector("[type=submit]");
    const started = Date.now();
    if (button) button.disabled = true;
    if (box) box.hidden = false;
    form.setAttribute("aria-busy", "true");
    const tick = () => { if (text) text.textContent = `${label}… ${Math.round((Date.now() - started) / 1000)} s`; };
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

  async function runRound(form) {
    const hm = window.HealthMesh;
    hm.clearErrors(form);
    const data = hm.formJson(form);
    const done = busy(form, "Running the round");
    try {
      const result = await hm.api("POST", "/api/v1/allocation/plans", data);
      if (!result.ok) {
        hm.showProblem(form, typeof result.data === "object" ? result.data : { detail: result.data });
        done();
        return;
      }
      setStatus(form, `Plan ${result.data.id} proposed: opening it…`, "ok");
      window.location.assign(`/console/allocation/${result.data.id}`);
    } catch (error) {
      hm.showProblem(form, { detail: `Could not reach the platform: ${error}` });
      done();
    }
  }

  function renderComparison(rows, day) {
    const section = document.getElementById("compare-results");
    const names = members();
    const policies = rows.map((row) => row.policy);
    const memberCodes = [...new Set(rows.flatMap((row) => Object.keys(row.fill_rate_by_member)))].sort();
    const groups = [...new Set(rows.flatMap((row) => Object.keys(row.fill_rate_by_income_group)))].sort();

    section.querySelector("[data-compare-summary]").replaceChildren(table(
      `${policies.length} policies on the snapshot of ${day}`,
      ["Policy", { text: "Units allocated", num: true }, { text: "Of requested", num: true },
        { text: "Min fill rate", num: true }, { text: "Gini", num: true }, { text: "Weighted unmet need", num: true },
        { text: "Expiring unused", num: true }, { text: "Distance (km)", num: true }, { text: "Solver (s)", num: true }],
      rows.map((row) => [
        row.policy,
        { text: number(row.allocated), num: true },
        { text: percent(row.requested ? row.allocated / row.requested : null), num: true },
        { text: percent(row.min_fill_rate), num: true },
        { text: number(row.gini_of_member_fill_rates, 3), num: true },
        { text: number(row.weighted_unmet_need), num: true },
        { text: number(row.units_expiring_unused), num: true },
        { text: number(row.total_distance_km), num: true },
        { text: row.solver_seconds === null || row.solver_seconds === undefined ? "—" : number(row.solver_seconds, 2), num: true },
      ]),
      "compare-summary",
    ));
    section.querySelector("[data-compare-members]").replaceChildren(table(
      "Fill rate by member and policy",
      ["Member", ...policies.map((p) => ({ text: p, num: true }))],
      memberCodes.map((code) => [
        names[code] ? `${names[code].name} (${code})` : code,
        ...rows.map((row) => ({ text: percent(row.fill_rate_by_member[code]), num: true })),
      ]),
      "compare-members",
    ));
    section.querySelector("[data-compare-income]").replaceChildren(table(
      "Fill rate by income group and policy",
      ["Income group", ...policies.map((p) => ({ text: p, num: true }))],
      groups.map((group) => [
        groupLabel(group),
        ...rows.map((row) => ({ text: percent(row.fill_rate_by_income_group[group]), num: true })),
      ]),
      "compare-income",
    ));
    section.hidden = false;
    const perPolicy = (pick) => rows.map((row) => ({ label: row.policy, data: pick(row) }));
    barChart(document.getElementById("chart-member"), memberCodes,
      perPolicy((row) => memberCodes.map((code) => row.fill_rate_by_member[code] ?? null)), { max: 1 });
    barChart(document.getElementById("chart-income"), groups.map(groupLabel),
      perPolicy((row) => groups.map((group) => row.fill_rate_by_income_group[group] ?? null)), { max: 1 });
    barChart(document.getElementById("chart-min"), policies,
      [{ label: "Minimum fill rate", data: rows.map((row) => row.min_fill_rate), color: PALETTE[2] }], { max: 1 });
    barChart(document.getElementById("chart-gini"), policies,
      [{ label: "Gini", data: rows.map((row) => row.gini_of_member_fill_rates), color: PALETTE[5] }], { percent: false });
  }

  async function compare(form) {
    const hm = window.HealthMesh;
    hm.clearErrors(form);
    const chosen = [...form.querySelectorAll('input[name="policies"]:checked')].map((box) => box.value);
    const day = form.querySelector('[name="day"]').value;
    if (!chosen.length) {
      hm.showProblem(form, { detail: "Choose at least one policy.", errors: [{ field: "policies", message: "choose at least one" }] });
      return;
    }
    const done = busy(form, "Comparing");
    try {
      const result = await hm.api("POST", "/api/v1/allocation/compare", day ? { policies: chosen, day } : { policies: chosen });
      if (!result.ok) {
        hm.showProblem(form, typeof result.data === "object" ? result.data : { detail: result.data });
        return;
      }
      renderComparison(result.data, day || "today");
      setStatus(form, `Compared ${result.data.length} policies.`, "ok");
      document.getElementById("compare-results-heading").focus();
    } catch (error) {
      hm.showProblem(form, { detail: `Could not reach the platform: ${error}` });
    } finally {
      done();
    }
  }

  function drawPlanCharts() {
    const node = document.getElementById("plan-chart-data");
    if (!node) return;
    const data = JSON.parse(node.textContent);
    const codes = Object.keys(data.by_member);
    barChart(document.getElementById("plan-chart-member"), codes,
      [{ label: data.policy || "fill rate", data: codes.map((code) => data.by_member[code]) }], { max: 1 });
    const groups = Object.keys(data.by_income_group);
    barChart(document.getElementById("plan-chart-income"), groups.map(groupLabel),
      [{ label: data.policy || "fill rate", data: groups.map((group) => data.by_income_group[group]), color: PALETTE[1] }], { max: 1 });
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-run-round]")) { event.preventDefault(); runRound(form); }
    else if (form.matches("form[data-compare]")) { event.preventDefault(); compare(form); }
  });
  document.addEventListener("DOMContentLoaded", drawPlanCharts);

  window.HealthMeshAllocation = { barChart, renderComparison, drawPlanCharts };
})();
