// The time each stage took, as one stacked bar: first-stage legs, fusion, fetch, rerank, and the rest.
import { formatMs, h } from "./dom.js";

const STAGES = [
  ["bm25", "BM25"],
  ["dense", "dense"],
  ["fusion", "fusion"],
  ["fetch", "fetch"],
  ["rerank", "rerank"],
];

export function timingBar(timings) {
  const total = timings.total ?? 0;
  const parts = STAGES.filter(([key]) => typeof timings[key] === "number").map(([key, label]) => [key, label, timings[key]]);
  const known = parts.reduce((sum, [, , ms]) => sum + ms, 0);
  if (total > known) parts.push(["other", "other", total - known]);
  const scale = Math.max(total, known) || 1;
  const bar = h("div", { class: "timing-bar", role: "img", "aria-label": `total ${formatMs(total)}` },
    parts.map(([key, label, ms]) =>
      h("span", { class: `seg seg-${key}`, style: `flex-grow:${Math.max(ms / scale, 0.004)}`, title: `${label} ${formatMs(ms)}` }),
    ),
  );
  const legend = h("ul", { class: "timing-legend" },
    parts.map(([key, label, ms]) => h("li", { dataset: { stage: key } }, h("i", { class: `dot seg-${key}` }), `${label} `, h("b", {}, formatMs(ms)))),
    h("li", { class: "total", dataset: { stage: "total" } }, "total ", h("b", {}, formatMs(total))),
  );
  return h("div", { class: "timings" }, bar, legend);
}
