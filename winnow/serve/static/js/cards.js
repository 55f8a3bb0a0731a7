// One hit as a card (rank, title, snippet with the query's words marked, score; in the reranked column how it
// moved), and a column of them. The card keeps its hit (card.hit) for the document dialog.
import { formatScore, h } from "./dom.js";
import { highlighted, snippet } from "./highlight.js";

export function column(stage, title, subtitle, cards) {
  return h("section", { class: "column", dataset: { stage } },
    h("header", { class: "column-head" }, h("h2", {}, title), h("span", { class: "meta" }, subtitle)),
    h("ol", { class: "hits" }, cards));
}

export function card(hit, pattern, colours, move, stage) {
  const colour = colours.get(hit.doc_id);
  const chunk = hit.chunk ? `chunk ${hit.chunk.slice(hit.chunk.lastIndexOf("#"))}` : null;
  const node = h("li", {
    class: `hit${colour ? " paired" : ""}`,
    tabindex: "0",
    style: colour ? `--link:${colour}` : null,
    dataset: { docId: hit.doc_id, rank: hit.rank, firstStageRank: hit.first_stage_rank ?? "" },
    "aria-label": `${hit.rank}. ${hit.title || hit.doc_id}`,
  },
    h("div", { class: "hit-head" },
      h("span", { class: "rank" }, `#${hit.rank}`),
      h("span", { class: "title" }, hit.title || hit.doc_id),
      move ? h("span", { class: `move ${move.kind}`, title: moveTitle(hit, stage) }, move.label) : null),
    h("p", { class: "snippet" }, highlighted(snippet(hit.text, pattern), pattern)),
    h("div", { class: "hit-foot" },
      h("span", { class: "id" }, hit.doc_id), chunk ? h("span", {}, chunk) : null,
      h("span", { class: "score", title: "score" }, formatScore(hit.score)),
      stage === "reranked" && hit.first_stage_score !== null
        ? h("span", { class: "aside", title: "first-stage rank and score" }, `first stage #${hit.first_stage_rank} · ${formatScore(hit.first_stage_score)}`)
        : null),
  );
  node.hit = hit;
  return node;
}

function moveTitle(hit, stage) {
  return stage === "reranked" ? `first stage #${hit.first_stage_rank}, reranked #${hit.rank}` : `first stage #${hit.rank}`;
}
