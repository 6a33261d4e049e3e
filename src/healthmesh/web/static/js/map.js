// A choropleth of the region drawn as SVG from vendored TopoJSON (world-atlas, Natural Earth):
// no tile server, no request beyond the platform. An equirectangular projection fitted to the
// members' bounding box is enough at regional scale.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  let cache = null;

  async function geometry() {
    if (cache) return cache;
    const [world, codes] = await Promise.all([
      fetch("/static/vendor/world-atlas/countries-50m.json").then((r) => r.json()),
      fetch("/static/vendor/world-atlas/iso3-numeric.json").then((r) => r.json()),
    ]);
    cache = { features: topojson.feature(world, world.objects.countries).features, codes };
    return cache;
  }

  function bounds(features) {
    let [x0, y0, x1, y1] = [180, 90, -180, -90];
    const visit = (c) => {
      if (typeof c[0] === "number") {
        const lon = c[0] < -30 && x1 > 90 ? c[0] + 360 : c[0];
        x0 = Math.min(x0, lon); x1 = Math.max(x1, lon); y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
      } else c.forEach(visit);
    };
    features.forEach((f) => visit(f.geometry.coordinates));
    return [x0, y0, x1, y1];
  }

  function pathOf(geometry, project) {
    const rings = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    return rings.map((polygon) => polygon.map((ring) =>
      ring.map((p, i) => (i ? "L" : "M") + project(p).map((v) => v.toFixed(1)).join(",")).join("") + "Z").join("")).join("");
  }

  // colour: coverage -> fill (red under 50 %, amber under 100 %, green above; grey without data)
  function colour(value) {
    if (value === null || value === undefined) return "#cfd6de";
    if (value < 0.5) return "#c0392b";
    if (value < 1) return "#e67e22";
    return "#27ae60";
  }

  // draw(svgElement, {THA: {value: 0.4, label: "Thailand: 40 %", href: "/console/members/THA"}}, routes)
  async function draw(svg, members, routes) {
    const { features, codes } = await geometry();
    const wanted = new Map(Object.entries(members).map(([iso3, d]) => [String(codes[iso3] || ""), { iso3, ...d }]));
    const ours = features.filter((f) => wanted.has(String(f.id)));
    if (!ours.length) return;
    const [x0, y0, x1, y1] = bounds(ours);
    const pad = 2, width = 800, height = Math.max(300, Math.round(width * (y1 - y0 + 2 * pad) / (x1 - x0 + 2 * pad)));
    const project = ([lon, lat]) => [((lon - x0 + pad) / (x1 - x0 + 2 * pad)) * width, ((y1 + pad - lat) / (y1 - y0 + 2 * pad)) * height];
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const near = features.filter((f) => !wanted.has(String(f.id)));
    for (const f of near) {
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("d", pathOf(f.geometry, project)); p.setAttribute("class", "land");
      svg.appendChild(p);
    }
    for (const f of ours) {
      const d = wanted.get(String(f.id));
      const a = document.createElementNS(SVG, "a");
      if (d.href) a.setAttribute("href", d.href);
      a.setAttribute("aria-label", d.label || d.iso3);
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("d", pathOf(f.geometry, project));
      p.setAttribute("fill", colour(d.value)); p.setAttribute("class", "member");
      const title = document.createElementNS(SVG, "title"); title.textContent = d.label || d.iso3;
      p.appendChild(title); a.appendChild(p); svg.appendChild(a);
    }
    (routes || []).forEach((r) => {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", r.coordinates.map((c) => project(c).join(",")).join(" "));
      line.setAttribute("class", `route ${r.status}${r.overdue ? " overdue" : ""}`);
      const title = document.createElementNS(SVG, "title"); title.textContent = r.label;
      line.appendChild(title); svg.appendChild(line);
    });
  }

  // Pages embed their map's data as JSON (#map-data, #route-data) and name the SVG in data-map.
  window.addEventListener("load", () => {
    document.querySelectorAll("svg[data-map]").forEach((svg) => {
      const read = (id) => { const node = document.getElementById(id); return node ? JSON.parse(node.textContent) : null; };
      draw(svg, read("map-data") || {}, read("route-data") || []);
    });
  });

  window.HealthMeshMap = { draw, colour };
})();
