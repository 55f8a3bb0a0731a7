// Query terms in a hit's text: a snippet around the first match, and <mark> around every match.
// Matching is by word prefix after stripping a plain English suffix, close to what the BM25 stemmer does.

const STOPWORDS = new Set(
  "a an and are as at be but by do does for from how in into is it its of on or so than that the their then there these this to was what when where which who why will with".split(" "),
);

function stem(term) {
  for (const suffix of ["ing", "es", "ed", "s"]) {
    if (term.length - suffix.length >= 3 && term.endsWith(suffix)) return term.slice(0, -suffix.length);
  }
  return term;
}

export function queryTerms(query) {
  const words = (query || "").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  const terms = words.filter((w) => w.length > 1 && !STOPWORDS.has(w)).map(stem);
  return [...new Set(terms)].sort((a, b) => b.length - a.length);
}

export function termPattern(query) {
  const terms = queryTerms(query);
  if (!terms.length) return null;
  const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join("|")})[\\p{L}\\p{N}]*`, "giu");
}

export function snippet(text, pattern, max = 320) {
  const clean = (text || "").replace(/\s+/g, " ").trim();
  if (clean.length <= max) return clean;
  let start = 0;
  if (pattern) {
    pattern.lastIndex = 0;
    const found = pattern.exec(clean);
    if (found && found.index > max / 3) start = found.index - Math.floor(max / 4);
  }
  start = Math.min(start, clean.length - max);
  if (start > 0) {
    const space = clean.indexOf(" ", start);
    start = space > 0 && space - start < 20 ? space + 1 : start;
  }
  let end = Math.min(clean.length, start + max);
  if (end < clean.length) {
    const space = clean.lastIndexOf(" ", end);
    end = space > start + max / 2 ? space : end;
  }
  return `${start > 0 ? "… " : ""}${clean.slice(start, end)}${end < clean.length ? " …" : ""}`;
}

export function highlighted(text, pattern) {
  const out = document.createDocumentFragment();
  if (!pattern) {
    out.append(text);
    return out;
  }
  let last = 0;
  pattern.lastIndex = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    out.append(mark);
    last = match.index + match[0].length;
  }
  if (last < text.length) out.append(text.slice(last));
  return out;
}
