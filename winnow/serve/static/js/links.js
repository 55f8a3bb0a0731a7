// Lines between the two columns joining each document to itself: where the first stage had it (left) and
// where the reranker put it (right). Drawn in the gutter between the columns; hidden when they stack.

const SVG = "http://www.w3.org/2000/svg";

export function drawLinks(results) {
  const gutter = results.querySelector(".gutter");
  if (!gutter) return;
  gutter.replaceChildren();
  if (getComputedStyle(gutter).display === "none") return;
  const left = results.querySelector('.column[data-stage="first"]');
  const right = results.querySelector('.column[data-stage="reranked"]');
  const box = gutter.getBoundingClientRect();
  const width = box.width;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(box.height));
  svg.setAttribute("viewBox", `0 0 ${width} ${box.height}`);
  for (const target of right.querySelectorAll(".hit")) {
    const source = left.querySelector(`.hit[data-doc-id="${CSS.escape(target.dataset.docId)}"]`);
    if (!source) continue;
    const a = source.getBoundingClientRect();
    const b = target.getBoundingClientRect();
    const y1 = a.top + Math.min(a.height / 2, 22) - box.top;
    const y2 = b.top + Math.min(b.height / 2, 22) - box.top;
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", `M0 ${y1} C ${width / 2} ${y1}, ${width / 2} ${y2}, ${width} ${y2}`);
    const move = target.querySelector(".move");
    path.setAttribute("class", `link ${move ? move.classList[1] : ""}`);
    path.setAttribute("data-doc-id", target.dataset.docId);
    path.style.stroke = getComputedStyle(target).getPropertyValue("--link") || "";
    svg.append(path);
  }
  gutter.append(svg);
}
