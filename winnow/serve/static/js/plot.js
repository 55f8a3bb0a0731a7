// Quality against latency, one point per method, as the eval report's plot draws it: p50 latency on a log
// scale across, the metric up. Plain SVG.
import { formatMs } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 520;
const H = 340;
const M = { top: 16, right: 16, bottom: 46, left: 56 };

function node(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) ticks.push(v);
    }
  }
  return ticks;
}

function niceTicks(lo, hi, count = 5) {
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
  return ticks;
}

const CHAR_W = 7.3; // 12px monospace
const LINE_H = 15;

function overlaps(a, b) {
  return a.x < b.x + b.w && a.x + a.w > b.x && a.y < b.y + b.h && a.y + a.h > b.y;
}

// A label's box beside its dot where it overlaps nothing placed yet; else the nearest free row on
// either side, joined to the dot by a thin line.
function placeLabel(cx, cy, w, taken) {
  const fits = (b) => b.x >= 2 && b.x + b.w <= W - 2 && b.y >= 2 && b.y + b.h <= H - M.bottom && !taken.some((t) => overlaps(b, t));
  const near = [[8, -15], [8, -6], [8, 3], [-8 - w, -15], [-8 - w, -6], [-8 - w, 3]];
  for (const [dx, dy] of near) {
    const b = { x: cx + dx, y: cy + dy, w, h: LINE_H };
    if (fits(b)) return b;
  }
  for (let step = 1; step < 24; step++) {
    for (const dy of [step * LINE_H, -step * LINE_H]) {
      for (const x of [cx - 24 - w, cx + 24]) {
        const b = { x, y: cy - 6 + dy, w, h: LINE_H, leader: true };
        if (fits(b)) return b;
      }
    }
  }
  return { x: cx + 8, y: cy - 6, w, h: LINE_H };
}

export function kindOf(method) {
  return method.endsWith(">rerank-alone") ? "alone" : method.endsWith(">rerank") ? "rerank" : "first";
}

export function qualityLatencyPlot(methods, metric) {
  const points = methods
    .map((m) => ({ method: m.method, x: Math.max(m.latency_ms?.total?.p50 ?? 0, 1e-3), y: m.metrics[metric] }))
    .filter((p) => typeof p.y === "number");
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": `${metric} against p50 latency` });
  if (!points.length) return svg;
  let [x0, x1] = [Math.min(...points.map((p) => p.x)), Math.max(...points.map((p) => p.x))];
  x0 /= 1.6;
  x1 *= 1.6;
  let [y0, y1] = [Math.min(...points.map((p) => p.y)), Math.max(...points.map((p) => p.y))];
  const pad = Math.max((y1 - y0) * 0.15, 0.02);
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const sx = (x) => M.left + ((Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * (W - M.left - M.right);
  const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - M.top - M.bottom);
  const grid = node("g", { class: "grid" });
  for (const t of logTicks(x0, x1)) {
    grid.append(node("line", { x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom }));
    grid.append(node("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle" }, formatMs(t).replace(" ms", "")));
  }
  for (const t of niceTicks(y0, y1)) {
    grid.append(node("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t) }));
    grid.append(node("text", { x: M.left - 8, y: sy(t) + 4, "text-anchor": "end" }, t.toFixed(2)));
  }
  svg.append(grid);
  svg.append(node("text", { class: "axis", x: (M.left + W - M.right) / 2, y: H - 8, "text-anchor": "middle" }, "query latency p50 (ms, log scale)"));
  svg.append(node("text", { class: "axis", x: -(M.top + H - M.bottom) / 2, y: 16, transform: "rotate(-90)", "text-anchor": "middle" }, metric));
  const taken = points.map((p) => ({ x: sx(p.x) - 6, y: sy(p.y) - 6, w: 12, h: 12 })); // the dots themselves
  for (const p of [...points].sort((a, b) => a.x - b.x || b.y - a.y)) {
    const cx = sx(p.x);
    const cy = sy(p.y);
    const g = node("g", { class: `point ${kindOf(p.method)}`, "data-method": p.method });
    g.append(node("title", {}, `${p.method}: ${metric} ${p.y.toFixed(4)}, p50 ${formatMs(p.x)}`));
    const box = placeLabel(cx, cy, p.method.length * CHAR_W, taken);
    taken.push(box);
    if (box.leader) g.append(node("line", { x1: cx, y1: cy, x2: box.x < cx ? box.x + box.w : box.x, y2: box.y + LINE_H / 2 }));
    g.append(node("circle", { cx, cy, r: 5.5 }));
    g.append(node("text", { x: box.x, y: box.y + 11 }, p.method));
    svg.append(g);
  }
  return svg;
}
