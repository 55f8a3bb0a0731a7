// A hit opened: GET /collections/{name}/documents/{id}, the whole text with the matched chunk marked, its
// metadata, and every chunk as indexed (offsets are Unicode code points, as the API gives them).
import { api, collectionPath } from "./api.js";
import { $, clear, h, plural } from "./dom.js";
import { highlighted, termPattern } from "./highlight.js";
import { showNotice } from "./notice.js";

export function createDocumentDialog({ onUnauthorized }) {
  const dialog = $("#doc-dialog");
  const title = $("#doc-title");
  const meta = $("#doc-meta");
  const body = $("#doc-body");
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });

  async function open(collection, hit, query) {
    title.textContent = hit.title || hit.doc_id;
    clear(meta, h("span", {}, hit.doc_id), h("span", {}, collection));
    clear(body, h("p", { class: "meta" }, "Loading…"));
    if (!dialog.open) dialog.showModal();
    let doc;
    try {
      doc = await api(collectionPath(collection, "documents", encodeURIComponent(hit.doc_id)));
    } catch (err) {
      if (err.status === 401) onUnauthorized(err.message);
      const notice = h("div", { class: "notice error" });
      showNotice(notice, "error", `Could not read document “${hit.doc_id}”.`, err.message);
      return clear(body, notice);
    }
    render(doc, hit, termPattern(query));
  }

  function render(doc, hit, pattern) {
    const matched = hit.chunk ? Number(hit.chunk.slice(hit.chunk.lastIndexOf("#") + 1)) : null;
    const chunk = doc.chunks.find((c) => c.index === matched);
    const points = Array.from(doc.text);
    clear(meta,
      h("span", {}, doc.id),
      h("span", {}, plural(points.length, "character")),
      h("span", {}, plural(doc.chunks.length, "chunk")),
      chunk ? h("span", { class: "matched-label" }, `matched chunk #${chunk.index}`) : null,
    );
    const full = h("div", { class: "doc-text" });
    if (chunk) {
      const mark = h("span", { class: "chunk-match", id: "doc-matched" },
        highlighted(points.slice(chunk.start, chunk.end).join(""), pattern));
      full.append(highlighted(points.slice(0, chunk.start).join(""), pattern), mark,
        highlighted(points.slice(chunk.end).join(""), pattern));
    } else {
      full.append(highlighted(doc.text, pattern));
    }
    const entries = Object.entries(doc.metadata);
    clear(body,
      entries.length
        ? h("dl", { class: "metadata" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, JSON.stringify(v))]))
        : null,
      h("h3", {}, "Text"),
      full,
      h("h3", {}, `Chunks (${doc.chunks.length})`),
      h("ol", { class: "chunks" }, doc.chunks.map((c) =>
        h("li", { class: `chunk${c.index === matched ? " matched" : ""}`, dataset: { index: c.index } },
          h("div", { class: "chunk-head" },
            h("b", {}, `#${c.index}`),
            h("span", { class: "meta" }, `characters ${c.start.toLocaleString("en")}–${c.end.toLocaleString("en")}`),
            c.index === matched ? h("span", { class: "badge" }, "matched") : null),
          h("p", {}, highlighted(c.text, pattern))))),
    );
    const target = body.querySelector(".chunk-match");
    if (target && points.length > 1200) target.scrollIntoView({ block: "center" });
  }

  return { open, close: () => dialog.close() };
}
