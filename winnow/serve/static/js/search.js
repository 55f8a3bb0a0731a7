// The search view: pick a collection, send POST /collections/{name}/search with include_first_stage, and
// show the first stage beside the reranked list, how each hit moved, the timings and the request as curl.
import { api, apiKey, ApiError, collectionPath } from "./api.js";
import { curlCommand } from "./curl.js";
import { card, column } from "./cards.js";
import { $, clear, formatDate, h, plural } from "./dom.js";
import { termPattern } from "./highlight.js";
import { drawLinks } from "./links.js";
import { fateOf, moveOf } from "./moves.js";
import { showNotice, hideNotice } from "./notice.js";
import { timingBar } from "./timings.js";

const PALETTE = ["#4f46e5", "#0891b2", "#ca8a04", "#db2777", "#059669", "#7c3aed", "#ea580c", "#2563eb", "#65a30d", "#be123c"];
const LAST_COLLECTION = "winnow.collection";

export function createSearchView({ health, openDocument, onUnauthorized }) {
  const form = $("#search-form");
  const select = $("#collection");
  const meta = $("#collection-meta");
  const query = $("#query");
  const depth = $("#depth");
  const topK = $("#top-k");
  const reranker = $("#reranker");
  const filter = $("#filter");
  const button = $("#search-button");
  const notice = $("#search-notice");
  const summary = $("#search-summary");
  const results = $("#results");
  let collections = [];
  let last = null; // {collection, query, response}
  let sent = 0; // searches sent: only the latest one's answer is shown

  fillRerankers(reranker, health);
  reranker.addEventListener("change", () => {
    depth.disabled = reranker.value === "none";
  });
  select.addEventListener("change", () => {
    remember(select.value);
    describe();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  form.addEventListener("change", (event) => {
    // a new first stage or reranker re-runs a search that was shown
    if (last && (event.target.name === "method" || event.target === reranker)) search();
  });
  results.addEventListener("mouseover", (event) => link(event, true));
  results.addEventListener("mouseout", (event) => link(event, false));
  results.addEventListener("click", (event) => {
    const card = event.target.closest(".hit");
    if (card && last) openDocument(last.collection, card.hit, last.query);
  });
  results.addEventListener("keydown", (event) => {
    const card = event.target.closest(".hit");
    if (card && last && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      openDocument(last.collection, card.hit, last.query);
    }
  });
  window.addEventListener("resize", () => drawLinks(results));

  function current() {
    return collections.find((c) => c.name === select.value);
  }

  function describe() {
    const c = current();
    if (!c) return clear(meta);
    clear(meta,
      h("span", {}, plural(c.documents, "document")),
      h("span", {}, plural(c.chunks, "chunk")),
      h("span", { title: "bi-encoder" }, c.model),
      h("span", { title: "chunk window / overlap, in tokens" }, `window ${c.window}/${c.overlap}`),
      c.created ? h("span", {}, `created ${formatDate(c.created)}`) : null,
      h("span", {}, `updated ${formatDate(c.updated)}`),
    );
    if (c.documents === 0) {
      showNotice(notice, "info", `Collection “${c.name}” is empty.`,
        `Add documents first: winnow index FOLDER --collection ${c.name}, or POST ${collectionPath(c.name, "documents")}.`);
    } else if (notice.dataset.kind === "info") {
      hideNotice(notice);
    }
  }

  async function loadCollections() {
    try {
      collections = (await api("/collections")).collections;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return onUnauthorized(err.message);
      return showNotice(notice, "error", "Could not list the collections.", errorText(err));
    }
    clear(select);
    if (!collections.length) {
      select.append(h("option", { value: "" }, "no collections"));
      select.disabled = true;
      showNotice(notice, "info", "This server has no collections yet.",
        "Create one: winnow index FOLDER --collection NAME (then restart nothing: the page lists it on reload), or POST /collections.");
      return;
    }
    select.disabled = false;
    for (const c of collections) select.append(h("option", { value: c.name }, `${c.name} (${c.documents.toLocaleString("en")})`));
    const wanted = recall();
    if (collections.some((c) => c.name === wanted)) select.value = wanted;
    describe();
  }

  function requestBody() {
    const body = { query: query.value, method: form.elements.method.value, include_first_stage: true };
    const k = numberOrText(topK.value);
    if (k !== undefined) body.top_k = k;
    body.rerank = reranker.value;
    if (reranker.value !== "none") {
      const d = numberOrText(depth.value);
      if (d !== undefined) body.depth = d;
    }
    const f = filter.value.trim();
    if (f) body.filter = parseOrText(f); // not JSON: sent as typed, and the API says what is wrong with it
    return body;
  }

  async function search() {
    const c = current();
    if (!c) return;
    const body = requestBody();
    const path = collectionPath(c.name, "search");
    const ticket = ++sent;
    button.disabled = true;
    results.setAttribute("aria-busy", "true");
    try {
      const response = await api(path, { method: "POST", body });
      if (ticket !== sent) return; // a later search was sent meanwhile
      last = { collection: c.name, query: body.query, response };
      hideNotice(notice);
      render(response, body, path, c);
    } catch (err) {
      if (ticket !== sent) return;
      last = null;
      clear(results);
      delete results.dataset.query;
      summary.hidden = true;
      if (err instanceof ApiError && err.status === 401) onUnauthorized(err.message);
      showNotice(notice, "error", errorTitle(err), err.message);
    } finally {
      if (ticket === sent) {
        button.disabled = false;
        results.removeAttribute("aria-busy");
      }
    }
  }

  function render(response, body, path, collection) {
    renderSummary(response, body, path);
    clear(results);
    Object.assign(results.dataset, { query: body.query, method: response.method, reranker: response.reranker ?? "none" });
    const pattern = termPattern(body.query);
    const reranked = response.reranker !== null;
    const first = response.first_stage ?? response.hits;
    if (!response.hits.length) {
      const why = body.filter !== undefined ? " No document matches the filter, or none matches the query." : "";
      const empty = collection.documents === 0 ? ` The collection “${collection.name}” is empty.` : why;
      showNotice(notice, "warn", `No results for “${body.query}”.`, empty.trim());
      return;
    }
    const firstIds = new Set(first.map((hit) => hit.doc_id));
    const rerankedRanks = new Map(response.hits.map((hit) => [hit.doc_id, hit.rank]));
    const colours = new Map();
    for (const hit of response.hits) {
      if (reranked && firstIds.has(hit.doc_id)) colours.set(hit.doc_id, PALETTE[colours.size % PALETTE.length]);
    }
    const firstColumn = column("first", `First stage · ${response.method}`, reranked ? `top ${first.length} before reranking` : "no reranker: this is the final ranking",
      first.map((hit) => card(hit, pattern, colours, reranked ? fateOf(hit, rerankedRanks, response.hits.length) : null, "first")));
    if (!reranked) {
      results.className = "results single";
      results.append(firstColumn);
      return;
    }
    const secondColumn = column("reranked", "Reranked", shortName(response.reranker),
      response.hits.map((hit) => card(hit, pattern, colours, moveOf(hit, firstIds), "reranked")));
    results.className = "results";
    results.append(firstColumn, h("div", { class: "gutter", "aria-hidden": "true" }), secondColumn);
    drawLinks(results);
  }

  function renderSummary(response, body, path) {
    summary.hidden = false;
    const command = curlCommand(path, body, { withKey: Boolean(apiKey()) || health.api_key_required });
    const copy = h("button", { type: "button", class: "ghost small", onclick: () => copyText(command, copy) }, "Copy");
    clear(summary,
      h("div", { class: "summary-head" },
        h("h3", {}, "Timings"),
        h("span", { class: "meta" }, `${plural(response.hits.length, "hit")} · ${response.method}${response.reranker ? ` → ${shortName(response.reranker)}` : ""}`)),
      timingBar(response.timings_ms),
      h("details", { class: "curl" },
        h("summary", {}, "Request as curl"),
        h("div", { class: "curl-box" }, h("pre", {}, h("code", { id: "curl-command" }, command)), copy)),
    );
  }

  function link(event, on) {
    const card = event.target.closest(".hit");
    if (!card || (event.relatedTarget && card.contains(event.relatedTarget))) return;
    for (const node of results.querySelectorAll(`[data-doc-id="${CSS.escape(card.dataset.docId)}"]`)) node.classList.toggle("linked", on);
  }

  return {
    load: loadCollections,
    focus: () => query.focus(),
    redraw: () => drawLinks(results),
  };
}

function fillRerankers(select, health) {
  clear(select);
  if (health.default_rerank_model) select.append(h("option", { value: "default" }, `default (${shortName(health.default_rerank_model)})`));
  for (const name of health.rerank_models) {
    if (name !== health.default_rerank_model) select.append(h("option", { value: name }, shortName(name)));
  }
  select.append(h("option", { value: "none" }, "none (first stage only)"));
}

function shortName(name) {
  return name.split("/").filter(Boolean).pop() || name;
}

function numberOrText(text) {
  const value = text.trim();
  if (value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : value;
}

function parseOrText(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorTitle(err) {
  if (!(err instanceof ApiError) || err.status === 0) return "The server could not be reached.";
  if (err.status >= 500) return `The server failed (${err.status}).`;
  return `The server refused the request (${err.status}).`;
}

function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    const selection = getSelection();
    selection.selectAllChildren(document.getElementById("curl-command"));
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

function remember(name) {
  try {
    localStorage.setItem(LAST_COLLECTION, name);
  } catch {
    /* no storage */
  }
}

function recall() {
  try {
    return localStorage.getItem(LAST_COLLECTION);
  } catch {
    return null;
  }
}
