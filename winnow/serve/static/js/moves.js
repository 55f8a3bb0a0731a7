// What reranking did to a hit: its first-stage rank (from the API) against its reranked rank.

export function moveOf(hit, firstStageIds) {
  const from = hit.first_stage_rank;
  if (from === null || from === undefined) return { kind: "new", label: "new" };
  if (!firstStageIds.has(hit.doc_id)) return { kind: "new", label: `new from #${from}` };
  const places = from - hit.rank;
  if (places > 0) return { kind: "up", label: `up ${places}` };
  if (places < 0) return { kind: "down", label: `down ${-places}` };
  return { kind: "same", label: "=" };
}

// Where a first-stage hit ended up after reranking.
export function fateOf(hit, rerankedRanks, topK) {
  const rank = rerankedRanks.get(hit.doc_id);
  if (rank === undefined) return { kind: "out", label: `not in reranked top ${topK}` };
  return { kind: rank < hit.rank ? "to-up" : rank > hit.rank ? "to-down" : "to-same", label: `→ #${rank}` };
}
