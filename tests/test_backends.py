"""Backends: ONNX Runtime fp32 and int8 against torch on the real bundled model (demo corpus), the
export cache, the per-CPU quantization table, and the cross-encoder on every backend (tiny seeded
model: mechanics, not quality). Exports go to a temporary WINNOW_CACHE_DIR, once per module."""

from __future__ import annotations

import os

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError
from winnow import storage
from winnow.models import backends, export
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import resolve_model

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
QUERY = "how do plants make food"
PASSAGES = [
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The stock market fell sharply on Monday after weak earnings reports.",
    "Plants absorb water through their roots and release oxygen through their leaves.",
    "A recipe for pancakes: flour, eggs, milk and a pinch of salt.",
    "Chlorophyll in leaves captures light energy for the plant.",
]

pytest.importorskip("onnxruntime", reason="the ONNX backends need onnxruntime (pip install 'winnow[onnx]')")


@pytest.fixture(scope="module", autouse=True)
def export_cache(tmp_path_factory):
    """The session's export folder (conftest sets WINNOW_CACHE_DIR under tmp), else one for this module."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("WINNOW_CACHE_DIR"):
            mp.setenv("WINNOW_CACHE_DIR", str(tmp_path_factory.mktemp("winnow-cache")))
        yield storage.cache_root()


@pytest.fixture(scope="module")
def demo_texts(demo_documents):
    return [f"{d.title} {d.text}" if d.title else d.text for d in demo_documents]


@pytest.fixture(scope="module")
def encoders():
    from winnow.encode.bi_encoder import BiEncoder

    return {b: BiEncoder(MODEL, backend=b) for b in backends.BACKENDS}


@pytest.fixture(scope="module")
def vectors(encoders, demo_texts):
    return {b: e.encode_documents(demo_texts) for b, e in encoders.items()}


# -- bi-encoder -------------------------------------------------------------------------------------
def test_onnx_fp32_equals_torch_on_the_demo_corpus(vectors):
    cos = np.sum(vectors["onnx"] * vectors["torch"], axis=1)
    assert cos.min() >= 0.9999


def test_onnx_int8_stays_close_to_fp32(vectors):
    cos = np.sum(vectors["onnx-int8"] * vectors["torch"], axis=1)
    assert cos.min() >= 0.98 and cos.mean() >= 0.99


def test_every_backend_gives_unit_vectors_in_the_callers_order(encoders, demo_texts):
    for backend, encoder in encoders.items():
        texts = demo_texts[:6]
        together = encoder.encode_documents(texts)
        assert together.shape == (6, 384) and together.dtype == np.float32, backend
        np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
        alone = np.stack([encoder.encode_documents([t])[0] for t in texts])
        tol = 1e-5 if backend != "onnx-int8" else 0.05  # int8: activation scales are per batch
        np.testing.assert_allclose(together, alone, atol=tol, err_msg=backend)
        assert encoder.dim == 384 and encoder.max_seq_length == 256


def test_queries_and_token_vectors_match_torch(encoders):
    torch_q = encoders["torch"].encode_query(QUERY)
    onnx_q = encoders["onnx"].encode_query(QUERY)
    assert float(torch_q @ onnx_q) >= 0.9999
    a = encoders["torch"].encode_tokens(PASSAGES[:2])
    b = encoders["onnx"].encode_tokens(PASSAGES[:2])
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert np.sum(x * y, axis=1).min() >= 0.999
    assert encoders["onnx"].encode_tokens([]) == [] and encoders["onnx"].encode_queries([]).shape == (0, 384)


def test_long_texts_are_truncated_like_torch(encoders):
    long_text = " ".join(PASSAGES * 30)  # far beyond 256 tokens
    cos = float(encoders["torch"].encode_documents([long_text])[0] @ encoders["onnx"].encode_documents([long_text])[0])
    assert cos >= 0.9999


def test_a_small_token_budget_changes_batches_not_vectors(demo_texts):
    from winnow.encode.bi_encoder import BiEncoder

    small = BiEncoder(MODEL, backend="onnx", max_tokens=64)
    big = BiEncoder(MODEL, backend="onnx", max_tokens=100_000)
    np.testing.assert_allclose(small.encode_documents(demo_texts), big.encode_documents(demo_texts), atol=1e-5)


# -- export cache -----------------------------------------------------------------------------------
def test_export_happens_once_and_is_read_back(encoders, export_cache):
    encoders["onnx-int8"].encode_query("warm up")  # exports (or has exported) both fp32 and int8
    resolved = resolve_model(MODEL)
    first = export.exported_model(resolved, "embed", "onnx-int8")
    mtime = first.path.stat().st_mtime_ns
    again = export.exported_model(resolved, "embed", "onnx-int8")
    assert again.cached and again.path == first.path
    assert again.path.stat().st_mtime_ns == mtime  # not rewritten
    assert first.folder.parent == export_cache / "models-cache"
    assert first.folder.name.startswith(model_fingerprint(resolved.path))
    assert "-embed-onnx-int8-" in first.folder.name
    leftovers = [p for p in first.folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temp folders renamed into place or removed


def test_exports_carry_no_skip_layer_norm_and_sessions_do_not_fuse_it_again(encoders):
    """The fp32 export's skip-LayerNorms are split into standard ops (winnow.models.graph_passes); the
    shipped reranker's too; and the loaded session's optimized graph has none either."""
    import json

    import onnx
    import onnxruntime as ort

    from winnow.models.graph_passes import DISABLED_OPTIMIZERS
    from winnow.models.resolve import SHIPPED_RERANKER

    encoders["onnx"].encode_query("warm up")
    fp32 = export.exported_model(resolve_model(MODEL), "embed", "onnx")
    meta = json.loads((fp32.folder / "meta.json").read_text())
    assert meta["skip_layer_norms_split"] == 12 and meta["export_version"] == export.EXPORT_VERSION
    for path in (fp32.path, resolve_model(SHIPPED_RERANKER).path / "model.onnx"):
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops, path
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(fp32.folder.parent / "optimized-check.onnx")
    ort.InferenceSession(str(fp32.path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS))
    ops = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    os.remove(options.optimized_model_filepath)


def test_an_export_of_an_older_version_is_rebuilt_and_replaced(encoders, export_cache):
    import json

    encoders["onnx"].encode_query("warm up")
    resolved = resolve_model(MODEL)
    current = export.exported_model(resolved, "embed", "onnx")
    meta_file = current.folder / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "export_version": export.EXPORT_VERSION - 1}))
    rebuilt = export.exported_model(resolved, "embed", "onnx")
    assert not rebuilt.cached and rebuilt.folder == current.folder
    assert json.loads(meta_file.read_text())["export_version"] == export.EXPORT_VERSION
    assert export.exported_model(resolved, "embed", "onnx").cached  # and read back from then on
    assert [p for p in current.folder.parent.iterdir() if p.name.startswith(".")] == []


def test_splitting_a_skip_layer_norm_keeps_its_output():
    """A hand-built SkipLayerNormalization (with bias) and its split form give the same output."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from winnow.models.graph_passes import DISABLED_OPTIMIZERS, split_skip_layer_norm

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), n) for n in ("g", "b", "bias")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 5, 16]) for n in ("x", "s")]
    node = helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y"], domain="com.microsoft", epsilon=1e-5)
    graph = helper.make_graph([node], "g", io, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)], ir_version=8)
    feed = {"x": rng.standard_normal((1, 5, 16)).astype(np.float32), "s": rng.standard_normal((1, 5, 16)).astype(np.float32)}
    fused = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert split_skip_layer_norm(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add", "Add", "LayerNormalization"]
    split = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"],
                                 disabled_optimizers=list(DISABLED_OPTIMIZERS)).run(None, feed)[0]
    np.testing.assert_allclose(split, fused, atol=1e-5)
    x = feed["x"] + numpy_helper.to_array(inits[2]) + feed["s"]
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * numpy_helper.to_array(inits[0]) + numpy_helper.to_array(inits[1])
    np.testing.assert_allclose(split, expected, atol=1e-4)


# -- choosing backends and quantization -------------------------------------------------------------
def test_quantization_config_follows_the_cpu():
    assert backends.quantization_config(frozenset({"avx2", "avx512f", "avx512_vnni"})).name == "avx512vnni"
    assert backends.quantization_config(frozenset({"avx2", "avx_vnni"})).reduce_range is False
    avx2 = backends.quantization_config(frozenset({"avx2", "fma"}))
    assert avx2.name == "avx2" and avx2.reduce_range is True  # 7-bit weights: no u8*s8 overflow without VNNI
    assert backends.quantization_config(frozenset({"asimd", "asimddp"})).name == "arm64"
    assert backends.quantization_config(frozenset()).name == "generic"
    assert backends.has_vnni(frozenset({"avx512_vnni"})) and not backends.has_vnni(frozenset({"avx2"}))


def test_backend_names_are_checked_and_auto_resolves():
    with pytest.raises(InvalidArgumentError, match="unknown backend 'tensorrt'; choose one of: auto, torch, onnx"):
        backends.check_backend("tensorrt")
    assert backends.resolve_backend("auto") in backends.BACKENDS
    from winnow.encode.bi_encoder import BiEncoder

    with pytest.raises(InvalidArgumentError, match="unknown backend"):
        BiEncoder(MODEL, backend="fast")


def test_the_cli_backend_reaches_the_encoder(demo_collection, capsys):
    """`winnow search --backend B`: the dense scores are those of B's query vectors (int8 ones differ)."""
    import json

    from winnow.cli import main
    from winnow.collection import Collection

    home, query = demo_collection.path.parent, "how do plants make food"
    got = {}
    for backend in ("onnx", "onnx-int8"):
        argv = ["--data", str(home), "search", "demo", query, "--method", "dense", "--top-k", "3", "--json", "--backend", backend]
        assert main(argv) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        with Collection.open("demo", home=home) as col:
            expected = col.use_backend(backend).similarities([query], [[h["doc_id"] for h in hits]])[0]
        assert [h["score"] for h in hits] == pytest.approx(expected, abs=1e-5), backend
        got[backend] = [h["score"] for h in hits]
    assert got["onnx"] != pytest.approx(got["onnx-int8"], abs=1e-6)  # the test can tell the two apart
    with pytest.raises(SystemExit):
        main(["index", "x.jsonl", "-c", "demo", "--backend", "gpu"])


# -- cross-encoder ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rerankers(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return {b: CrossEncoderReranker(str(tiny_cross_encoder_path), backend=b, cache=False) for b in backends.BACKENDS}


def test_cross_encoder_backends_agree(rerankers):
    scores = {b: r.score(QUERY, PASSAGES) for b, r in rerankers.items()}
    np.testing.assert_allclose(scores["onnx"], scores["torch"], atol=1e-4)
    assert np.corrcoef(scores["onnx-int8"], scores["torch"])[0, 1] > 0.95
    pairs = [(QUERY, PASSAGES[0]), ("stock prices", PASSAGES[1])]
    np.testing.assert_allclose(rerankers["onnx"].score_pairs(pairs), rerankers["torch"].score_pairs(pairs), atol=1e-4)


def test_cross_encoder_onnx_truncates_at_max_length(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    short = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="onnx", max_length=32, cache=False)
    reference = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="torch", max_length=32, cache=False)
    long_text = " ".join(PASSAGES)
    longer = long_text + " " + "Unrelated words about trains and weather. " * 20
    a, b = short.score(QUERY, [long_text, longer])
    assert a == pytest.approx(float(b), abs=1e-5)  # both cut to the same first 32 tokens
    assert a == pytest.approx(float(reference.score(QUERY, [long_text])[0]), abs=1e-4)
    assert short.max_length == 32


def test_rank_through_onnx_keeps_the_contract(rerankers):
    from winnow.types import Hit

    hits = [Hit(doc_id=f"d{i}", score=10.0 - i, rank=i, text=t) for i, t in enumerate(PASSAGES, start=1)]
    ranking = rerankers["onnx-int8"].rank(QUERY, hits, top_k=3)
    assert [h.rank for h in ranking.hits] == [1, 2, 3]
    assert all(h.first_stage_rank is not None for h in ranking.hits)
    assert os.environ.get("WINNOW_CACHE_DIR")  # exports stayed under pytest's tmp folder
