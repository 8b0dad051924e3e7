// The status page: reads /status.json every 5 s and draws tables and SVG line charts.
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"];
  let previous = null;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function fill(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...rows);
  }

  function sourceRows(now) {
    if (!now.sources.length) return [emptyRow("no source has run yet", 6)];
    return now.sources.map((s) => {
      const tr = document.createElement("tr");
      cell(tr, s.source);
      cell(tr, s.lag_s == null ? "no event yet" : s.lag_s.toFixed(1) + " s");
      cell(tr, s.cursor == null ? "-" : String(s.cursor));
      cell(tr, String(s.published));
      let rate = "-";
      if (previous) {
        const before = previous.sources.find((p) => p.source === s.source);
        const dt = now.time - previous.time;
        if (before && dt > 0) rate = ((s.published - before.published) / dt).toFixed(1);
      }
      cell(tr, rate);
      cell(tr, String(s.rejected));
      return tr;
    });
  }

  function emptyRow(text, span) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = span;
    td.className = "muted";
    td.textContent = text;
    tr.appendChild(td);
    return tr;
  }

  function projectorRows(now) {
    if (!now.projectors.length) return [emptyRow("no projector has run yet", 3)];
    return now.projectors.map((p) => {
      const tr = document.createElement("tr");
      cell(tr, p.name);
      cell(tr, p.lag ? p.lag + " behind" : "caught up", p.lag ? "lag" : "ok");
      cell(tr, p.partitions.map((q) =>
        q.topic + "/" + q.partition + " " + q.next_offset + "/" + q.end_offset +
        (q.lag ? " (" + q.lag + ")" : "")).join(", "));
      return tr;
    });
  }

  function chart(id, series) {
    const svg = document.getElementById(id);
    const w = svg.width.baseVal.value, h = svg.height.baseVal.value, pad = 4;
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const names = Object.keys(series);
    const points = names.flatMap((n) => series[n]);
    if (!points.length) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", 10); t.setAttribute("y", h / 2);
      t.textContent = "no samples yet";
      svg.appendChild(t);
      return;
    }
    const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]));
    const top = Math.max(1, ...points.map((p) => p[1]));
    const x = (t) => pad + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - 2 * pad);
    const y = (v) => h - pad - (v / top) * (h - 2 * pad - 12);
    names.forEach((name, i) => {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[i % COLORS.length]);
      line.setAttribute("points", series[name].map((p) => x(p[0]) + "," + y(p[1])).join(" "));
      const title = document.createElementNS(ns, "title");
      title.textContent = name;
      line.appendChild(title);
      svg.appendChild(line);
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", pad); label.setAttribute("y", 12);
    label.setAttribute("font-size", "11");
    label.textContent = "max " + top.toFixed(top < 10 ? 1 : 0) + "  " + names.slice(0, 4).join(", ");
    svg.appendChild(label);
  }

  function charts(samples) {
    const rate = { "events/s": samples.map((s) => [s.time, s.events_per_s]) };
    const lag = {}, p95 = {};
    for (const s of samples) {
      for (const [name, v] of Object.entries(s.lag)) (lag[name] = lag[name] || []).push([s.time, v]);
      for (const [route, v] of Object.entries(s.p95_ms)) (p95[route] = p95[route] || []).push([s.time, v]);
    }
    chart("chart-rate", samples.length ? rate : {});
    chart("chart-lag", lag);
    chart("chart-p95", p95);
  }

  async function refresh() {
    try {
      const response = await fetch("/status.json", { cache: "no-store" });
      if (!response.ok) throw new Error("status.json answered " + response.status);
      const data = await response.json();
      const now = data.now;
      fill("sources", sourceRows(now));
      fill("projectors", projectorRows(now));
      const dead = Object.entries(now.dead_letters);
      document.getElementById("dead").textContent = "dead letters: " +
        (dead.length ? dead.map(([k, v]) => k + " " + v).join(", ") : "none");
      document.getElementById("rows").textContent = "rows: " +
        Object.entries(now.rows).map(([k, v]) => k + " " + v).join(", ");
      charts(data.samples);
      document.getElementById("updated").textContent =
        "updated " + new Date(now.time * 1000).toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s";
      previous = now;
    } catch (err) {
      document.getElementById("updated").textContent = "refresh failed: " + err.message;
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
