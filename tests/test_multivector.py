"""Compressed token vectors and the multi-vector index: codes against the uncompressed vectors as the
reference, MaxSim with known answers, PLAID-style search against brute force, parts that are immutable
and committed by their manifest. Token vectors are real: the bundled MiniLM through an (untrained)
ColBERT projection, over the demo corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.errors import IncompatibleCollectionError, InvalidArgumentError
from winnow.index.multivector import MultiVectorPart, maxsim_many
from winnow.index.residual import (
    Codebook,
    Compression,
    decode,
    encode,
    from_int8,
    pack,
    to_int8,
    train_codebook,
    unpack,
)

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_corpus.jsonl"


@pytest.fixture(scope="module")
def token_matrices(tmp_path_factory):
    pytest.importorskip("torch")
    from transformers import AutoTokenizer

    from winnow.encode.colbert import ColBERTConfig, ColBERTEncoder, build_module, save_model
    from winnow.models.resolve import resolve_model

    base = resolve_model("all-MiniLM-L6-v2").path
    config = ColBERTConfig(dim=96, query_length=16, document_length=96)
    folder = tmp_path_factory.mktemp("colbert")
    save_model(build_module(base, config, seed=0), AutoTokenizer.from_pretrained(str(base), local_files_only=True), config, folder)
    enc = ColBERTEncoder(folder)
    texts = [json.loads(line)["text"] for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = enc.encode_documents(texts)
    queries = enc.encode_queries(["what is the capital of france", "how do vaccines work", "python programming"])
    return docs, queries


@pytest.fixture(scope="module")
def codebooks(token_matrices):
    docs, _ = token_matrices
    vectors = np.concatenate(docs)
    return {bits: train_codebook(vectors, centroids=64, bits=bits, seed=0) for bits in (2, 4)}


def test_maxsim_many_known_answer():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    v = np.array([[1, 0], [0.6, 0.8], [0, -1]], dtype=np.float32)  # doc 0: rows 0-1, doc 1: row 2
    assert maxsim_many(q, v, np.array([0, 2, 3])).tolist() == pytest.approx([1.8, -1.0])
    with pytest.raises(InvalidArgumentError, match="at least one token"):
        maxsim_many(q, v, np.array([0, 0, 3]))


@pytest.mark.parametrize("bits", [2, 4])
def test_pack_round_trip(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=(7, 96)).astype(np.uint8)
    packed = pack(codes, bits)
    assert packed.shape == (7, 96 * bits // 8) and (unpack(packed, bits, 96) == codes).all()


def test_bytes_per_token():
    assert Compression.RESIDUAL_2.bytes_per_token(96) == 26 <= 32
    assert Compression.RESIDUAL_4.bytes_per_token(96) == 50
    assert Compression.INT8.bytes_per_token(96) == 96 and Compression.FLOAT16.bytes_per_token(96) == 192
    with pytest.raises(InvalidArgumentError, match="residual-2"):
        Compression.parse("pq")


def test_codes_against_uncompressed(token_matrices, codebooks):
    docs, queries = token_matrices
    vectors = np.concatenate(docs)
    cos = {bits: (decode(cb, encode(cb, vectors)) * vectors).sum(axis=1) for bits, cb in codebooks.items()}
    # measured on these vectors: 0.990 (4 bits) and 0.943 (2 bits), 64 centroids for 1,181 tokens
    assert cos[4].mean() > 0.98 and cos[2].mean() > 0.93 and cos[4].mean() > cos[2].mean()
    int8 = from_int8(to_int8(vectors))
    assert np.abs(int8 - vectors).max() < 1.5 / 127  # half a step, plus the renormalisation
    # MaxSim over the demo corpus: per query token within a few hundredths of float, the order kept
    # (untrained vectors are spread out, the hard case: trained ColBERT vectors cluster around centroids)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    errors, corr = {2: [], 4: []}, {2: [], 4: []}
    for q in queries:
        reference = maxsim_many(q, vectors, offsets)
        for bits, cb in codebooks.items():
            approx = maxsim_many(q, decode(cb, encode(cb, vectors)), offsets)
            errors[bits].append(np.abs(approx - reference).mean() / len(q))
            corr[bits].append(np.corrcoef(np.argsort(np.argsort(approx)), np.argsort(np.argsort(reference)))[0, 1])
    # measured: mean error per query token 0.0165 (2 bits), 0.0072 (4 bits); rank correlation >= 0.905, 0.978
    assert np.mean(errors[4]) < 0.012 and np.mean(errors[2]) < 0.025 and min(corr[2]) > 0.85 and min(corr[4]) > 0.95


def test_codebook_saves_and_loads_memory_mapped(codebooks, tmp_path):
    cb = codebooks[2]
    cb.save(tmp_path / "cb")
    loaded = Codebook.load(tmp_path / "cb")
    assert isinstance(loaded.centroids, np.memmap) and loaded.bits == 2
    for name in ("centroids", "cutoffs", "weights"):
        assert np.array_equal(np.asarray(getattr(loaded, name)), getattr(cb, name))
    manifest = tmp_path / "cb" / "codebook.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 99}))
    with pytest.raises(IncompatibleCollectionError, match="format_version 99"):
        Codebook.load(tmp_path / "cb")


@pytest.mark.parametrize("compression", list(Compression))
def test_part_scores_and_searches_like_brute_force(token_matrices, codebooks, tmp_path, compression):
    docs, queries = token_matrices
    cb = codebooks[compression.bits or 2]
    MultiVectorPart.write(tmp_path / "p", docs, cb, compression)
    part = MultiVectorPart.open(tmp_path / "p", cb)
    assert part.docs == len(docs) and part.tokens == sum(len(d) for d in docs)
    assert isinstance(part.store, np.memmap)
    stored, offsets = part.vectors(np.arange(part.docs))
    for q in queries:
        exact = maxsim_many(q, stored, offsets)
        assert np.allclose(part.score(q, np.arange(part.docs)), exact, atol=1e-5)
        assert np.allclose(part.score(q, [3, 1]), exact[[3, 1]], atol=1e-5)
        # probing every centroid with room for every document is brute force
        hits = part.search(q, 5, nprobe=len(cb.centroids), candidates=part.docs)
        assert hits.rows.tolist() == np.lexsort((np.arange(len(exact)), -exact))[:5].tolist()
    # a document searched with its own tokens finds itself first, even through few centroids
    for row in (0, 7, 21):
        assert part.search(docs[row], 1, nprobe=2, candidates=8).rows.tolist() == [row]


def test_parts_are_immutable_and_committed_by_manifest(token_matrices, codebooks, tmp_path):
    docs, _ = token_matrices
    cb = codebooks[2]
    MultiVectorPart.write(tmp_path / "p", docs[:5], cb, Compression.RESIDUAL_2)
    with pytest.raises(InvalidArgumentError, match="immutable"):
        MultiVectorPart.write(tmp_path / "p", docs[:5], cb, Compression.RESIDUAL_2)
    (tmp_path / "p" / "multivector.json").unlink()  # as if the writer died before its last file
    with pytest.raises(IncompatibleCollectionError, match="no committed"):
        MultiVectorPart.open(tmp_path / "p", cb)
    with pytest.raises(InvalidArgumentError, match="4-bit"):
        MultiVectorPart.write(tmp_path / "q", docs[:5], cb, Compression.RESIDUAL_4)


def test_codebook_over_given_centroids(token_matrices, codebooks):
    vectors = np.concatenate(token_matrices[0])
    four = train_codebook(vectors, centroids=np.asarray(codebooks[2].centroids), bits=4)
    assert np.array_equal(four.centroids, codebooks[2].centroids) and four.weights.shape == (96, 16)
    assert (decode(four, encode(four, vectors)) * vectors).sum(axis=1).mean() > 0.98
