// The evaluation view: GET /reports lists the `winnow eval` output folders the server was pointed at
// (--reports DIR); GET /reports/{name} gives one report.json: its table, its quality-against-latency plot,
// and per query a first stage against a reranked method, the queries that got worse first.
import { api, ApiError } from "./api.js";
import { $, clear, formatDate, h, plural } from "./dom.js";
import { hideNotice, showNotice } from "./notice.js";
import { kindOf, qualityLatencyPlot } from "./plot.js";

const SHOWN = 30; // per-query rows before "show all"

export function createEvalView({ onUnauthorized }) {
  const select = $("#report");
  const meta = $("#report-meta");
  const notice = $("#eval-notice");
  const content = $("#eval-content");
  const base = $("#pq-base");
  const other = $("#pq-reranked");
  const metricSelect = $("#pq-metric");
  let listed = false;
  let report = null;
  let showAll = false;

  select.addEventListener("change", () => open(select.value));
  for (const s of [base, other, metricSelect]) s.addEventListener("change", () => {
    showAll = false;
    renderPerQuery();
  });

  async function load() {
    if (listed) return;
    let list;
    try {
      list = await api("/reports");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return onUnauthorized(err.message);
      return showNotice(notice, "error", "Could not list the eval reports.", err.message);
    }
    listed = true;
    clear(select);
    if (!list.reports.length) {
      select.disabled = true;
      select.append(h("option", { value: "" }, "no reports"));
      return showNotice(notice, "info", list.configured ? "No eval reports in the folder the server was given." : "This server shows no eval reports.",
        list.configured
          ? "Write one there: winnow eval DATASET --methods bm25,bm25>rerank --output DIR/NAME (the page lists it on reload)."
          : "Start it with winnow serve --reports DIR, where DIR is a winnow eval output folder or a folder of them.");
    }
    for (const r of list.reports) select.append(h("option", { value: r.name }, `${r.name} · ${r.dataset} (${r.split})`));
    await open(list.reports[0].name);
  }

  async function open(name) {
    try {
      report = await api(`/reports/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return onUnauthorized(err.message);
      content.hidden = true;
      return showNotice(notice, "error", `Could not read report “${name}”.`, err.message);
    }
    hideNotice(notice);
    content.hidden = false;
    describe();
    renderTable();
    renderPlot();
    fillPairs();
    renderPerQuery();
  }

  function describe() {
    const c = report.corpus || {};
    clear(meta,
      h("span", {}, `${report.dataset} · ${report.split}`),
      h("span", {}, `${plural(report.judged_queries, "judged query", "judged queries")} of ${report.queries}`),
      c.documents !== undefined ? h("span", {}, `${plural(c.documents, "document")} · ${(c.model || "").split("/").pop()}`) : null,
      report.reranker ? h("span", {}, `reranker ${report.reranker}`) : null,
      h("span", {}, `rerank depth ${report.rerank_depth}`),
      h("span", {}, formatDate(report.created)),
    );
  }

  function renderTable() {
    const table = $("#eval-table");
    const metrics = report.metrics;
    const primary = metrics[0];
    const baseline = report.methods[0]?.method;
    const calibrated = report.methods.some((m) => m.calibration);
    const best = Object.fromEntries(metrics.map((k) => [k, Math.max(...report.methods.map((m) => m.metrics[k] ?? -Infinity))]));
    const head = h("tr", {}, h("th", {}, "method"), metrics.map((k) => h("th", { class: "num" }, k)),
      h("th", { class: "num", title: `paired randomization test of ${primary} against ${baseline}` }, `p (vs ${baseline})`),
      calibrated ? h("th", { class: "num" }, "ECE") : null,
      h("th", { class: "num" }, "p50 ms"), h("th", { class: "num" }, "p95 ms"));
    const rows = report.methods.map((m) => {
      const test = m.significance?.[primary];
      const p = !test ? "(base)" : test.p === null ? "" : test.p < 0.001 ? "<0.001" : test.p.toFixed(3);
      const total = m.latency_ms?.total || {};
      return h("tr", { class: kindOf(m.method), dataset: { method: m.method } },
        h("th", { scope: "row" }, m.method),
        metrics.map((k) => h("td", { class: `num${m.metrics[k] === best[k] ? " best" : ""}` }, m.metrics[k]?.toFixed(4) ?? "")),
        h("td", { class: "num p" }, p),
        calibrated ? h("td", { class: "num" }, m.calibration ? m.calibration.ece_10_bins.toFixed(4) : "") : null,
        h("td", { class: "num" }, total.p50?.toFixed(1) ?? ""),
        h("td", { class: "num" }, total.p95?.toFixed(1) ?? ""));
    });
    clear(table, h("thead", {}, head), h("tbody", {}, rows));
    $("#eval-note").textContent = `Bold: best in its column. p: paired randomization test against ${baseline} (two-sided). Latency: ${report.latency_note || ""}.`;
  }

  function renderPlot() {
    const metric = report.metrics.includes("nDCG@10") ? "nDCG@10" : report.metrics[0];
    $("#eval-plot-title").textContent = `${metric} against latency`;
    clear($("#eval-plot"), qualityLatencyPlot(report.methods, metric));
  }

  function fillPairs() {
    const names = report.methods.map((m) => m.method);
    const [first, second] = defaultPair(names);
    for (const [s, value] of [[base, first], [other, second]]) {
      clear(s, names.map((n) => h("option", { value: n }, n)));
      s.value = value;
    }
    const metrics = Object.keys(report.methods[0]?.per_query || {});
    clear(metricSelect, metrics.map((k) => h("option", { value: k }, k)));
    metricSelect.value = metrics.includes("nDCG@10") ? "nDCG@10" : metrics[0];
  }

  function renderPerQuery() {
    const list = $("#pq-list");
    const summary = $("#pq-summary");
    const metric = metricSelect.value;
    const a = report.methods.find((m) => m.method === base.value)?.per_query?.[metric] || {};
    const b = report.methods.find((m) => m.method === other.value)?.per_query?.[metric] || {};
    const texts = report.query_texts || {};
    const rows = Object.keys(a).filter((q) => q in b && a[q] !== null && b[q] !== null)
      .map((q) => ({ qid: q, a: a[q], b: b[q], delta: b[q] - a[q] }))
      .sort((x, y) => x.delta - y.delta || x.qid.localeCompare(y.qid, "en", { numeric: true }));
    const worse = rows.filter((r) => r.delta < -1e-9).length;
    const better = rows.filter((r) => r.delta > 1e-9).length;
    const mean = rows.length ? rows.reduce((s, r) => s + r.delta, 0) / rows.length : 0;
    clear(summary,
      h("span", { class: "down" }, `${worse} worse`), h("span", { class: "up" }, `${better} better`),
      h("span", {}, `${rows.length - worse - better} unchanged`),
      h("span", {}, `mean change ${mean >= 0 ? "+" : ""}${mean.toFixed(4)}`),
      h("span", { class: "meta" }, `${metric}: ${other.value} against ${base.value}, worst first`));
    const scale = Math.max(...rows.map((r) => Math.abs(r.delta)), 1e-9);
    const shown = showAll ? rows : rows.slice(0, SHOWN);
    clear(list,
      h("li", { class: "pq head", "aria-hidden": "true" }, h("span", {}, "query"), h("span", { class: "num" }, base.value),
        h("span", { class: "num" }, other.value), h("span", { class: "num" }, "change")),
      shown.map((r) => {
        const kind = r.delta < -1e-9 ? "worse" : r.delta > 1e-9 ? "better" : "same";
        const width = `${(Math.abs(r.delta) / scale) * 50}%`;
        return h("li", { class: `pq ${kind}`, dataset: { qid: r.qid, delta: r.delta.toFixed(6) } },
          h("span", { class: "q" }, h("b", {}, r.qid), texts[r.qid] ? h("span", {}, texts[r.qid]) : null),
          h("span", { class: "num" }, r.a.toFixed(4)),
          h("span", { class: "num" }, r.b.toFixed(4)),
          h("span", { class: "delta" },
            h("span", { class: "delta-bar" }, h("i", { style: kind === "worse" ? `right:50%;width:${width}` : `left:50%;width:${width}` })),
            h("span", { class: "num" }, `${r.delta >= 0 ? "+" : ""}${r.delta.toFixed(4)}`)));
      }),
    );
    if (rows.length > shown.length) {
      list.append(h("li", { class: "pq more" }, h("button", { type: "button", class: "ghost small", onclick: () => {
        showAll = true;
        renderPerQuery();
      } }, `Show all ${rows.length} queries`)));
    }
  }

  return { load };
}

export function defaultPair(names) {
  for (const suffix of [">rerank", ">rerank-alone"]) {
    const reranked = names.find((n) => n.endsWith(suffix) && names.includes(n.slice(0, -suffix.length)));
    if (reranked) return [reranked.slice(0, -suffix.length), reranked];
  }
  return [names[0], names[1] ?? names[0]];
}
