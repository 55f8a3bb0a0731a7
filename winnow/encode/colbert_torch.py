"""The ColBERT torch module (imported only where torch is wanted: training, encoding, ONNX export)."""

from __future__ import annotations

import torch


class ColBERTModule(torch.nn.Module):
    """encoder -> last hidden states -> linear projection (no bias) -> unit-length rows.

    ``forward(input_ids, attention_mask)`` returns (batch, length, dim), padded positions zeroed (the
    scoring functions below also mask them out)."""

    def __init__(self, encoder: torch.nn.Module, projection: torch.nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vectors = torch.nn.functional.normalize(self.projection(hidden).float(), p=2, dim=-1)
        return vectors * attention_mask.unsqueeze(-1).to(vectors.dtype)


def maxsim_scores(queries: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """Every query against every document: (nq, Lq, d) x (nd, Ld, d) -> (nq, nd), the sum over query
    tokens of the best dot product with a real (masked-in) document token."""
    sims = torch.einsum("qid,njd->qnij", queries, docs)
    sims = sims.masked_fill(~doc_mask.bool()[None, :, None, :], float("-inf"))
    return sims.max(dim=-1).values.sum(dim=-1)


def paired_maxsim(queries: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor, per_query: int) -> torch.Tensor:
    """Each query against its own ``per_query`` documents (docs laid out query by query): (nq, per_query)."""
    nq = queries.shape[0]
    d = docs.view(nq, per_query, docs.shape[1], docs.shape[2])
    m = doc_mask.view(nq, per_query, doc_mask.shape[1])
    sims = torch.einsum("qid,qnjd->qnij", queries, d)
    sims = sims.masked_fill(~m.bool()[:, :, None, :], float("-inf"))
    return sims.max(dim=-1).values.sum(dim=-1)
