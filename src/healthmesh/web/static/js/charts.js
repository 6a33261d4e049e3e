// HealthMesh charts: Chart.js (vendored, /static/vendor/chartjs) drawn from the server-rendered
// tables they illustrate. The table stays the source and what assistive technology reads; the
// chart only enhances it, so a page without scripts (or without Chart.js) loses nothing.
//
//   <table id="t"> a header row naming the series; one row per x value, its first cell the label,
//                  the other cells numbers ("1,234"; a data-value attribute wins over the text).
//   <canvas data-chart="line" data-chart-table="t" data-chart-columns="1,3" role="img"
//           aria-label="..."></canvas>   (columns: 1-based data columns, default all;
//                                           data-chart-zero="false" lets the y axis leave zero)
//
// Load chart.umd.min.js and this file with `defer`; canvases present at load are drawn, and so are
// those in content htmx swaps in. Put the canvas in a box with a height (the chart fills it).
(function () {
  "use strict";
  const PALETTE = ["#0b6e4f", "#1f5fa8", "#b5520b", "#7b3fa0", "#a93226", "#2c3e50"];

  function cellValue(cell) {
    const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
    const value = parseFloat(String(raw).replace(/[,\s\u202f]/g, ""));
    return Number.isFinite(value) ? value : null;
  }

  // {labels, series: [{label, data}]} from a table: the header names series, rows are x values.
  function readTable(table) {
    const header = table.tHead ? table.tHead.rows[0] : table.rows[0];
    const names = Array.from(header.cells).slice(1).map((cell) => cell.textContent.trim());
    const rows = Array.from(table.tBodies.length ? table.tBodies[0].rows : table.rows).filter((row) => row !== header);
    return {
      labels: rows.map((row) => row.cells[0].textContent.trim()),
      series: names.map((label, index) => ({ label, data: rows.map((row) => (row.cells[index + 1] ? cellValue(row.cells[index + 1]) : null)) })),
    };
  }

  function line(canvas, data, options) {
    if (!window.Chart) return null;
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    const opts = options || {};
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.series.map((series, index) => {
          const colour = series.colour || PALETTE[index % PALETTE.length];
          return { label: series.label, data: series.data, borderColor: colour, backgroundColor: colour, pointRadius: 2, borderWidth: 2, tension: 0.15, spanGaps: true };
        }),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: data.series.length > 1 }, tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${Number(item.parsed.y).toLocaleString()}` } } },
        scales: {
          x: { ticks: { autoSkip: true, maxRotation: 0 } },
          y: { beginAtZero: opts.beginAtZero !== false, ticks: { callback: (value) => Number(value).toLocaleString() } },
        },
      },
    });
  }

  function draw(canvas) {
    const table = document.getElementById(canvas.dataset.chartTable || "");
    if (!table) return null;
    const data = readTable(table);
    const wanted = (canvas.dataset.chartColumns || "").split(",").map((s) => parseInt(s, 10)).filter(Number.isFinite);
    // A series keeps its column's colour, so small multiples of one table tell products apart.
    data.series.forEach((series, index) => { series.colour = PALETTE[index % PALETTE.length]; });
    if (wanted.length) data.series = wanted.map((column) => data.series[column - 1]).filter(Boolean);
    return line(canvas, data, { beginAtZero: canvas.dataset.chartZero !== "false" });
  }

  function drawAll(root) {
    (root || document).querySelectorAll('canvas[data-chart="line"]').forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:afterSwap", (event) => drawAll(event.target));
  window.HealthMeshCharts = { readTable, line, draw, drawAll };
})();
