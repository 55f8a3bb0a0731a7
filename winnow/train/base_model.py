"""The model a reranker is fine-tuned from: the base weights as a one-logit cross-encoder, with a usable
pooler, optionally cut to its first layers."""

from __future__ import annotations

import logging

from winnow.errors import InvalidArgumentError
from winnow.models.resolve import resolve_model

log = logging.getLogger("winnow.train.trainer")

POOLER_INITS = ("auto", "identity", "keep")


def load_base(config):
    """The base model as a one-logit ``CrossEncoder`` (a new head where the base has none), optionally cut.

    A bi-encoder base (all-MiniLM-L6-v2) was trained through mean pooling: its [CLS] pooler is nearly
    untrained (weights of std ~0.009), so the new head sees almost the same vector for every pair and
    learns slowly. ``pooler_init="auto"`` (the default) therefore sets the pooler to the identity where the
    head is new (the base is no sequence-classification checkpoint); ``"identity"`` always, ``"keep"`` never.
    """
    import json

    from sentence_transformers.cross_encoder import CrossEncoder

    path = resolve_model(config.base_model).path
    try:
        architectures = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        architectures = []
    new_head = not any(a.endswith("ForSequenceClassification") for a in architectures)
    model = CrossEncoder(str(path), num_labels=1, max_length=config.max_length, local_files_only=True)
    if config.pooler_init == "identity" or (config.pooler_init == "auto" and new_head):
        identity_pooler(model)
    if config.layers is not None:
        cut_layers(model, config.layers)
    return model


def identity_pooler(model) -> bool:
    """Set a BERT-like pooler's dense layer to the identity (pooled = tanh([CLS])); False if it has none."""
    import torch

    pooler = getattr(model.model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if dense is None or dense.weight.shape[0] != dense.weight.shape[1]:
        log.warning("base model has no square pooler; pooler_init ignored")
        return False
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype))
        dense.bias.zero_()
    return True


def cut_layers(model, n: int) -> None:
    """Keep the first ``n`` transformer layers of a BERT-like cross-encoder (in place)."""
    import torch

    base = model.model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise InvalidArgumentError(f"cannot cut layers of {type(base).__name__}: no encoder.layer list")
    if n > len(layers):
        raise InvalidArgumentError(f"layers must be <= {len(layers)} for this base model, got {n}")
    base.encoder.layer = torch.nn.ModuleList(list(layers)[:n])
    model.model.config.num_hidden_layers = n

