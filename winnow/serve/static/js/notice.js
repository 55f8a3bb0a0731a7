// One place for what the page tells the user: info (an empty collection), warn (no results), error (the
// API's own message, verbatim).
import { h } from "./dom.js";

export function showNotice(node, kind, title, detail = "") {
  node.hidden = false;
  node.dataset.kind = kind;
  node.className = `notice ${kind}`;
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  node.replaceChildren(h("strong", { class: "notice-title" }, title), detail ? h("span", { class: "notice-detail" }, detail) : "");
}

export function hideNotice(node) {
  node.hidden = true;
  delete node.dataset.kind;
  node.replaceChildren();
}
