"use strict";
// sparktf's chart library: small SVG charts for the control room page, with no dependencies
// and nothing fetched (the server puts this file inside the page).
//
//   SparkCharts.bars(rows, opts)                  rows: [{label, value, color?, markers?: [{value, label, color?}]}]
//   SparkCharts.groupedBars(labels, series, opts) series: [{name, values: [number|null], color?}]
//   SparkCharts.lines(series, opts)               series: [{name, color?, points: [{x, y, lower?, upper?}]}]
//   SparkCharts.intervals(rows, opts)             rows: [{label, value, lower, upper, color?}]
//
// Each returns an <svg> element. Common options: title, width (560), height, format (y or
// value labels), min/max (value axis). lines: xType "time" (x in ms since the epoch) or
// "number", xFormat. intervals: reference {value, label}. Every text goes in through
// textContent or an attribute, never as markup; null, NaN and missing values are skipped.
(function (global) {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"];
  const CHAR_W = 6.4;  // rough width of one character at the charts' 11 px font

  const finite = (x) => typeof x === "number" && Number.isFinite(x);

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // A hover text (SVG <title>) on a mark.
  function tip(node, text) { node.appendChild(el("title", {}, text)); return node; }

  function format(x) {
    if (!finite(x)) return "n/a";
    const a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
    return String(Number(x.toPrecision(3)));
  }

  // Round tick values from lo to hi (about `count` of them), covering both.
  function ticks(lo, hi, count) {
    if (!finite(lo) || !finite(hi)) { lo = 0; hi = 1; }
    if (hi <= lo) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.5);
    const raw = (hi - lo) / Math.max(count, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const r = raw / mag;
    const step = (r >= 7.5 ? 10 : r >= 3.5 ? 5 : r >= 1.5 ? 2 : 1) * mag;
    const out = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
    if (out[out.length - 1] < hi) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
    return out;
  }

  function extent(values, opts) {
    const v = values.filter(finite);
    let lo = finite(opts.min) ? opts.min : Math.min(0, ...v);
    let hi = finite(opts.max) ? opts.max : (v.length ? Math.max(...v) : 1);
    if (!v.length && !finite(opts.max)) hi = 1;
    if (hi <= lo) hi = lo + 1;
    const t = ticks(lo, hi, opts.ticks || 5);
    if (!finite(opts.min)) lo = t[0];
    if (!finite(opts.max)) hi = t[t.length - 1];
    return {lo, hi, ticks: t.filter((x) => x >= lo - 1e-12 && x <= hi + 1e-12)};
  }

  // The svg with its title and legend; returns it with the plot area left for the marks.
  function frame(kind, opts, legend, margin) {
    const width = opts.width || 560;
    const height = opts.height || 240;
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", class: "chart chart-" + kind,
      "data-chart": kind, preserveAspectRatio: "xMinYMin meet", style: `max-width:${width}px`,
      "font-family": "system-ui, sans-serif", "font-size": 11,
    });
    let top = 8;
    if (opts.title) {
      svg.appendChild(el("title", {}, opts.title));
      svg.setAttribute("aria-label", opts.title);
      svg.appendChild(el("text", {x: 4, y: 15, "font-size": 12.5, "font-weight": 600, class: "chart-title",
                                  fill: opts.titleColor || "#222"}, opts.title));
      top = 26;
    }
    if (legend && legend.length) {
      let x = margin.left, y = top + 6;
      for (const item of legend) {
        const w = 18 + CHAR_W * String(item.name).length + 14;
        if (x + w > width - 4 && x > margin.left) { x = margin.left; y += 15; }
        const g = el("g", {class: "legend-item"});
        g.appendChild(el("rect", {x, y: y - 8, width: 10, height: 10, fill: item.color, rx: 2}));
        g.appendChild(el("text", {x: x + 14, y: y + 1, fill: "#333"}, item.name));
        svg.appendChild(g);
        x += w;
      }
      top = y + 12;
    }
    const plot = {x: margin.left, y: top + 4, w: width - margin.left - margin.right, h: 0};
    plot.h = Math.max(height - plot.y - margin.bottom, 40);
    return {svg, plot};
  }

  function valueAxis(svg, plot, scale, opts) {
    const fmt = opts.format || format;
    for (const t of scale.ticks) {
      const y = plot.y + plot.h - ((t - scale.lo) / (scale.hi - scale.lo)) * plot.h;
      svg.appendChild(el("line", {x1: plot.x, x2: plot.x + plot.w, y1: y, y2: y, stroke: t === 0 ? "#999" : "#e4e4e4"}));
      svg.appendChild(el("text", {x: plot.x - 5, y: y + 3.5, "text-anchor": "end", fill: "#555"}, fmt(t)));
    }
    if (opts.yLabel) {
      svg.appendChild(el("text", {x: 10, y: plot.y + plot.h / 2, transform: `rotate(-90 10 ${plot.y + plot.h / 2})`,
                                  "text-anchor": "middle", fill: "#555"}, opts.yLabel));
    }
    return (v) => plot.y + plot.h - ((v - scale.lo) / (scale.hi - scale.lo)) * plot.h;
  }

  // Category labels under the bars, slanted when they do not fit.
  function categoryLabels(svg, plot, labels, band) {
    const longest = Math.max(0, ...labels.map((l) => String(l).length));
    const slant = longest * CHAR_W > band * 0.95;
    labels.forEach((label, i) => {
      const x = plot.x + band * (i + 0.5);
      const y = plot.y + plot.h + 13;
      const text = String(label).length > 22 ? String(label).slice(0, 21) + "…" : String(label);
      const node = el("text", {x, y, fill: "#333", "text-anchor": slant ? "end" : "middle",
                               transform: slant ? `rotate(-30 ${x} ${y})` : null, class: "category"}, text);
      svg.appendChild(tip(node, String(label)));
    });
  }

  function bottomMargin(labels, plotWidth) {
    const longest = Math.max(0, ...labels.map((l) => Math.min(String(l).length, 22)));
    const band = plotWidth / Math.max(labels.length, 1);
    return longest * CHAR_W > band * 0.95 ? 16 + longest * CHAR_W * 0.55 : 22;
  }

  function bars(rows, opts) {
    opts = opts || {};
    const width = opts.width || 560;
    const labels = rows.map((r) => r.label);
    const margin = {left: 48, right: 10, bottom: bottomMargin(labels, width - 58)};
    const {svg, plot} = frame("bars", opts, opts.legend, margin);
    const all = rows.flatMap((r) => [r.value, ...(r.markers || []).map((m) => m.value)]);
    const scale = extent(all, opts);
    const y = valueAxis(svg, plot, scale, opts);
    const fmt = opts.format || format;
    const band = plot.w / Math.max(rows.length, 1);
    rows.forEach((r, i) => {
      const x = plot.x + band * i + band * 0.18;
      const w = band * 0.64;
      if (finite(r.value)) {
        const top = y(Math.max(r.value, scale.lo)), base = y(Math.max(scale.lo, Math.min(0, scale.hi)));
        svg.appendChild(tip(el("rect", {x, y: Math.min(top, base), width: w, height: Math.abs(base - top) || 0.5,
                                        fill: r.color || opts.color || PALETTE[0], class: "bar", "data-label": r.label}),
                            `${r.label}: ${fmt(r.value)}`));
        svg.appendChild(el("text", {x: x + w / 2, y: Math.min(top, base) - 3, "text-anchor": "middle", fill: "#222",
                                    class: "value"}, fmt(r.value)));
      } else {
        svg.appendChild(el("text", {x: x + w / 2, y: plot.y + plot.h - 4, "text-anchor": "middle", fill: "#999"}, "n/a"));
      }
      for (const m of r.markers || []) {
        if (!finite(m.value)) continue;
        const my = y(m.value);
        const line = el("line", {x1: x - band * 0.1, x2: x + w + band * 0.1, y1: my, y2: my, stroke: m.color || "#c0392b",
                                 "stroke-width": 2, "stroke-dasharray": m.dash || null, class: "marker"});
        svg.appendChild(tip(line, `${m.label || "marker"}: ${fmt(m.value)}`));
      }
    });
    categoryLabels(svg, plot, labels, band);
    return svg;
  }

  function groupedBars(labels, series, opts) {
    opts = opts || {};
    const width = opts.width || 560;
    const margin = {left: 48, right: 10, bottom: bottomMargin(labels, width - 58)};
    const colored = series.map((s, i) => ({...s, color: s.color || PALETTE[i % PALETTE.length]}));
    const {svg, plot} = frame("grouped-bars", opts, colored.map((s) => ({name: s.name, color: s.color})), margin);
    const scale = extent(colored.flatMap((s) => s.values), opts);
    const y = valueAxis(svg, plot, scale, opts);
    const fmt = opts.format || format;
    const band = plot.w / Math.max(labels.length, 1);
    const inner = (band * 0.8) / Math.max(colored.length, 1);
    labels.forEach((label, i) => {
      colored.forEach((s, j) => {
        const v = s.values[i];
        const x = plot.x + band * i + band * 0.1 + inner * j;
        if (!finite(v)) return;
        const top = y(Math.max(v, scale.lo)), base = y(Math.max(scale.lo, Math.min(0, scale.hi)));
        svg.appendChild(tip(el("rect", {x, y: Math.min(top, base), width: Math.max(inner - 1.5, 1),
                                        height: Math.abs(base - top) || 0.5, fill: s.color, class: "bar",
                                        "data-series": s.name, "data-label": label}),
                            `${label}, ${s.name}: ${fmt(v)}`));
        if (opts.valueLabels && inner >= 22) {
          svg.appendChild(el("text", {x: x + inner / 2, y: Math.min(top, base) - 3, "text-anchor": "middle",
                                      fill: "#333", class: "value"}, fmt(v)));
        }
      });
    });
    categoryLabels(svg, plot, labels, band);
    return svg;
  }

  function timeLabel(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
  }

  function lines(series, opts) {
    opts = opts || {};
    const colored = series.map((s, i) => ({...s, color: s.color || PALETTE[i % PALETTE.length]}));
    const margin = {left: 52, right: 14, bottom: 24};
    const {svg, plot} = frame("lines", opts, colored.length > 1 || opts.legend ? colored : null, margin);
    const points = colored.flatMap((s) => s.points.filter((p) => finite(p.x)));
    const ys = points.flatMap((p) => [p.y, p.lower, p.upper]);
    const scale = extent(ys, opts);
    const y = valueAxis(svg, plot, scale, opts);
    const xs = points.map((p) => p.x);
    let x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
    if (x1 <= x0) { const pad = opts.xType === "time" ? 3600e3 : 1; x0 -= pad; x1 += pad; }
    const x = (v) => plot.x + ((v - x0) / (x1 - x0)) * plot.w;
    const xfmt = opts.xFormat || (opts.xType === "time" ? timeLabel : format);
    const n = Math.max(2, Math.min(6, Math.floor(plot.w / 95)));
    let xt;
    if (opts.xType === "time") {
      // Ticks on the data's own times (whole hours in an hourly report), at most n of them.
      const unique = [...new Set(xs)].sort((a, b) => a - b);
      const step = Math.max(1, Math.ceil(unique.length / n));
      xt = unique.length ? unique.filter((_, i) => i % step === 0) : [x0, x1];
    } else {
      xt = ticks(x0, x1, n).filter((t) => t >= x0 && t <= x1);
    }
    for (const t of xt) {
      svg.appendChild(el("line", {x1: x(t), x2: x(t), y1: plot.y + plot.h, y2: plot.y + plot.h + 4, stroke: "#999"}));
      const anchor = x(t) < plot.x + 30 ? "start" : x(t) > plot.x + plot.w - 30 ? "end" : "middle";
      svg.appendChild(el("text", {x: x(t), y: plot.y + plot.h + 15, "text-anchor": anchor, fill: "#555"}, xfmt(t)));
    }
    const fmt = opts.format || format;
    for (const s of colored) {
      const pts = s.points.filter((p) => finite(p.x)).sort((a, b) => a.x - b.x);
      // Contiguous runs of points with a value: a gap (null) breaks the line and its band.
      const runs = [];
      let run = [];
      for (const p of pts) {
        if (finite(p.y)) run.push(p); else if (run.length) { runs.push(run); run = []; }
      }
      if (run.length) runs.push(run);
      const g = el("g", {class: "series", "data-series": s.name});
      for (const r of runs) {
        const banded = r.filter((p) => finite(p.lower) && finite(p.upper));
        if (banded.length === r.length && r.length > 1) {
          const up = r.map((p) => `${x(p.x).toFixed(1)},${y(p.upper).toFixed(1)}`);
          const down = r.slice().reverse().map((p) => `${x(p.x).toFixed(1)},${y(p.lower).toFixed(1)}`);
          g.appendChild(el("polygon", {points: up.concat(down).join(" "), fill: s.color, "fill-opacity": 0.15, class: "band"}));
        } else {
          for (const p of banded) {
            g.appendChild(el("line", {x1: x(p.x), x2: x(p.x), y1: y(p.lower), y2: y(p.upper), stroke: s.color,
                                      "stroke-opacity": 0.5, "stroke-width": 3}));
          }
        }
        if (r.length > 1) {
          g.appendChild(el("polyline", {points: r.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" "),
                                        fill: "none", stroke: s.color, "stroke-width": 2, class: "line"}));
        }
        for (const p of r) {
          const band = finite(p.lower) && finite(p.upper) ? ` [${fmt(p.lower)}, ${fmt(p.upper)}]` : "";
          g.appendChild(tip(el("circle", {cx: x(p.x), cy: y(p.y), r: r.length > 40 ? 1.5 : 2.8, fill: s.color, class: "point"}),
                            `${s.name}, ${xfmt(p.x)}: ${fmt(p.y)}${band}`));
        }
      }
      svg.appendChild(g);
    }
    if (!points.length) {
      svg.appendChild(el("text", {x: plot.x + plot.w / 2, y: plot.y + plot.h / 2, "text-anchor": "middle", fill: "#999"}, "no data"));
    }
    return svg;
  }

  function intervals(rows, opts) {
    opts = opts || {};
    const width = opts.width || 560;
    const longest = Math.max(4, ...rows.map((r) => Math.min(String(r.label).length, 28)));
    const margin = {left: Math.min(12 + longest * CHAR_W, width * 0.4), right: 70, bottom: 24};
    const height = opts.height || (margin.bottom + (opts.title ? 34 : 14) + Math.max(rows.length, 1) * 30);
    const {svg, plot} = frame("intervals", {...opts, height}, null, margin);
    const values = rows.flatMap((r) => [r.value, r.lower, r.upper]);
    if (opts.reference && finite(opts.reference.value)) values.push(opts.reference.value);
    const scale = extent(values, {...opts, min: finite(opts.min) ? opts.min : undefined});
    const x = (v) => plot.x + ((v - scale.lo) / (scale.hi - scale.lo)) * plot.w;
    const fmt = opts.format || format;
    for (const t of scale.ticks) {
      svg.appendChild(el("line", {x1: x(t), x2: x(t), y1: plot.y, y2: plot.y + plot.h, stroke: "#e4e4e4"}));
      svg.appendChild(el("text", {x: x(t), y: plot.y + plot.h + 14, "text-anchor": "middle", fill: "#555"}, fmt(t)));
    }
    if (opts.reference && finite(opts.reference.value)) {
      const rx = x(opts.reference.value);
      svg.appendChild(tip(el("line", {x1: rx, x2: rx, y1: plot.y - 2, y2: plot.y + plot.h, stroke: "#888",
                                      "stroke-dasharray": "4 3", class: "reference"}),
                          `${opts.reference.label || "reference"}: ${fmt(opts.reference.value)}`));
    }
    const band = plot.h / Math.max(rows.length, 1);
    rows.forEach((r, i) => {
      const cy = plot.y + band * (i + 0.5);
      const color = r.color || PALETTE[i % PALETTE.length];
      const label = String(r.label).length > 28 ? String(r.label).slice(0, 27) + "…" : String(r.label);
      svg.appendChild(tip(el("text", {x: plot.x - 8, y: cy + 4, "text-anchor": "end", fill: "#222", class: "category"}, label),
                          String(r.label)));
      const g = el("g", {class: "interval", "data-label": r.label});
      if (finite(r.lower) && finite(r.upper)) {
        g.appendChild(el("line", {x1: x(r.lower), x2: x(r.upper), y1: cy, y2: cy, stroke: color, "stroke-width": 2}));
        for (const v of [r.lower, r.upper]) {
          g.appendChild(el("line", {x1: x(v), x2: x(v), y1: cy - 5, y2: cy + 5, stroke: color, "stroke-width": 2}));
        }
      }
      if (finite(r.value)) {
        g.appendChild(el("circle", {cx: x(r.value), cy, r: 4.5, fill: color}));
        const ci = finite(r.lower) && finite(r.upper) ? ` [${fmt(r.lower)}, ${fmt(r.upper)}]` : "";
        tip(g, `${r.label}: ${fmt(r.value)}${ci}`);
        svg.appendChild(el("text", {x: plot.x + plot.w + 6, y: cy + 4, fill: "#222", class: "value"}, fmt(r.value)));
      } else {
        svg.appendChild(el("text", {x: plot.x + plot.w + 6, y: cy + 4, fill: "#999"}, "n/a"));
      }
      svg.appendChild(g);
    });
    return svg;
  }

  global.SparkCharts = {bars, groupedBars, lines, intervals, format, palette: PALETTE};
})(window);
