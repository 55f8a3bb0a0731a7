// The page's start: GET /health (open) says which rerankers are served and whether a key is wanted; then
// the search view, the document dialog and the evaluation view; "#search" / "#eval" pick the view.
import { api, apiKey, setApiKey } from "./api.js";
import { $, h } from "./dom.js";
import { createDocumentDialog } from "./document.js";
import { createEvalView } from "./eval.js";
import { showNotice } from "./notice.js";
import { createSearchView } from "./search.js";

let searchView = null;
let evalView = null;
let health = null;

function showKeyPanel(message) {
  const panel = $("#key-panel");
  panel.hidden = false;
  const note = $("#key-message");
  if (message) showNotice(note, "error", message);
  else note.hidden = true;
  $("#key-input").focus();
}

function askForKey(message) {
  setApiKey("");
  showKeyPanel(message);
}

async function start() {
  try {
    health = await api("/health");
  } catch (err) {
    return showNotice($("#search-notice"), "error", "The server could not be reached.", err.message);
  }
  $("#server-info").replaceChildren(h("span", {}, `winnow ${health.version}`));
  const documents = createDocumentDialog({ onUnauthorized: askForKey });
  searchView = createSearchView({ health, openDocument: documents.open, onUnauthorized: askForKey });
  evalView = createEvalView({ onUnauthorized: askForKey });
  const keyButton = $("#key-button");
  keyButton.hidden = !health.api_key_required;
  keyButton.addEventListener("click", () => showKeyPanel());
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return showNotice($("#key-message"), "error", "Type the server's API key.");
    setApiKey(key);
    try {
      await api("/collections");
    } catch (err) {
      return askForKey(err.message);
    }
    $("#key-panel").hidden = true;
    $("#key-input").value = "";
    await route(true);
  });
  window.addEventListener("hashchange", () => route(false));
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing && !$("#doc-dialog").open) {
      event.preventDefault();
      location.hash = "#search";
      searchView.focus();
    }
  });
  if (health.api_key_required && !apiKey()) return showKeyPanel();
  await route(true);
}

async function route(reload) {
  const view = location.hash === "#eval" ? "eval" : "search";
  $("#view-search").hidden = view !== "search";
  $("#view-eval").hidden = view !== "eval";
  for (const tab of document.querySelectorAll(".tabs a")) tab.setAttribute("aria-selected", String(tab.id === `tab-${view}`));
  if (health.api_key_required && !apiKey()) return;
  if (reload) await searchView.load();
  if (view === "eval") await evalView.load();
  else searchView.redraw();
  document.body.dataset.ready = view;
}

start();
