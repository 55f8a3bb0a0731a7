"""Model resolution (offline first, clean errors) and the bi-encoder, checked against known scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from winnow.errors import ModelNotFoundError
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model

from _seed import SEED_DOCS, SEED_QUERY, SEED_TOP5

UNKNOWN = "winnow-tests/no-such-model"


# -- resolution ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"])
def test_bundled_model_resolves_offline_by_full_and_short_id(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model(name)
    assert resolved.source == "package"
    assert resolved.name == DEFAULT_BI_ENCODER
    assert (resolved.path / "config.json").is_file()
    assert (resolved.path / "tokenizer.json").is_file()


def test_local_folder_resolves_to_itself(tmp_path, monkeypatch):
    bundled = resolve_model(DEFAULT_BI_ENCODER).path
    link = tmp_path / "my-model"
    link.symlink_to(bundled, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("my-model")
    assert resolved.source == "local"
    assert resolved.path == bundled.resolve()
    assert resolve_model(str(link)).source == "local"


def test_a_file_or_an_empty_name_is_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(weights))
    with pytest.raises(ModelNotFoundError, match="empty"):
        resolve_model("  ")


def test_missing_local_path_says_so_without_asking_the_hub(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="no such local folder") as err:
        resolve_model(str(tmp_path / "nowhere"))
    assert time.perf_counter() - start < 5
    assert "nowhere" in str(err.value)


def _assert_three_ways(message: str) -> None:
    assert UNKNOWN in message
    for way in ("(1) pass a local folder", "(2) install a package", "(3) connect to the internet"):
        assert way in message, message


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_unknown_model_offline_names_it_and_the_three_ways(value, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(UNKNOWN)
    message = str(err.value)
    _assert_three_ways(message)
    assert "HF_HUB_OFFLINE=1" in message


def test_unknown_model_with_the_hub_enabled_fails_fast_and_clean(tmp_path):
    """The hub client really runs (in a clean process, hub enabled); the network here is closed or slow.
    It must come back within ~30 s with the same typed error, not a traceback or a hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # never touch a real cache
    code = (
        "import json, sys\n"
        "from winnow.errors import ModelNotFoundError\n"
        "from winnow.models.resolve import resolve_model\n"
        "try:\n"
        f"    resolve_model({UNKNOWN!r})\n"
        "except ModelNotFoundError as exc:\n"
        "    print(json.dumps({'error': str(exc)}))\n"
        "else:\n"
        "    print(json.dumps({'error': None}))\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30, f"hub lookup took {elapsed:.1f} s"
    message = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert message is not None
    _assert_three_ways(message)
    assert "hub could not provide it" in message
    assert "Traceback" not in proc.stderr


def test_fingerprint_is_stable_and_tells_models_apart(tiny_cross_encoder_path):
    bundled = resolve_model(DEFAULT_BI_ENCODER).path
    assert model_fingerprint(bundled) == model_fingerprint(bundled)
    assert model_fingerprint(bundled) != model_fingerprint(tiny_cross_encoder_path)


# -- bi-encoder --------------------------------------------------------------------------------------
def seed_top5(encoder) -> list[tuple[int, float]]:
    scores = encoder.encode_documents(SEED_DOCS) @ encoder.encode_query(SEED_QUERY)
    order = np.argsort(-scores, kind="stable")[:5]
    return [(int(i) + 1, round(float(scores[i]), 4)) for i in order]


def test_seed_check_through_the_bi_encoder(bi_encoder):
    """The default backend (``auto``: ONNX fp32 here) reproduces the reference scores to 4 decimals."""
    assert seed_top5(bi_encoder) == SEED_TOP5


def test_seed_check_on_the_torch_backend():
    from winnow.encode.bi_encoder import BiEncoder

    assert seed_top5(BiEncoder(DEFAULT_BI_ENCODER, backend="torch")) == SEED_TOP5


def test_vectors_are_unit_float32_in_input_order(bi_encoder):
    docs = bi_encoder.encode_documents(SEED_DOCS[:3])
    assert docs.shape == (3, 384) and docs.dtype == np.float32 and docs.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([bi_encoder.encode_documents([t])[0] for t in SEED_DOCS[:3]])
    np.testing.assert_allclose(docs, one_by_one, atol=1e-5)
    queries = bi_encoder.encode_queries([SEED_QUERY, SEED_DOCS[0]])
    assert queries.shape == (2, 384)
    np.testing.assert_allclose(queries[0], bi_encoder.encode_query(SEED_QUERY), atol=1e-6)
    assert bi_encoder.dim == 384 and bi_encoder.max_seq_length == 256


def test_empty_inputs_give_empty_arrays(bi_encoder):
    assert bi_encoder.encode_documents([]).shape == (0, 384)
    assert bi_encoder.encode_queries([]).shape == (0, 384)
    assert bi_encoder.encode_tokens([]) == []


def test_token_vectors_cover_every_token_and_are_unit(bi_encoder):
    texts = ["short text", SEED_DOCS[0]]
    from tokenizers import Tokenizer

    tokens = bi_encoder.encode_tokens(texts)
    tokenizer = Tokenizer.from_file(str(bi_encoder.resolved.path / "tokenizer.json"))
    tokenizer.no_padding()  # the saved tokenizer pads to 128
    for text, matrix in zip(texts, tokens):
        n_tokens = len(tokenizer.encode(text, add_special_tokens=True).ids)
        assert matrix.shape == (n_tokens, 384)  # [CLS] and [SEP] included, no padding
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_bi_encoder_with_an_unknown_model_fails_at_construction(monkeypatch):
    from winnow.encode.bi_encoder import BiEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        BiEncoder(UNKNOWN)


# -- winnow models: what runs offline here, with measured quality and speed -----------------------------------
def test_models_lists_the_shipped_reranker_and_the_bundled_bi_encoder_with_their_numbers(capsys):
    import json

    from winnow.cli import main
    from winnow.models.resolve import SHIPPED_RERANKER

    assert main(["models", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    shipped, bundled = entries[SHIPPED_RERANKER], entries[DEFAULT_BI_ENCODER]
    assert (shipped["kind"], shipped["source"], bundled["kind"], bundled["source"]) == ("reranker", "shipped", "bi-encoder", "bundled")
    card = json.loads((resolve_model(SHIPPED_RERANKER).path / "training.json").read_text())
    by_set = {r["dataset"]: r["methods"]["dense>rerank"]["nDCG@10"] for r in card["evaluation"]}
    assert shipped["ndcg@10"] == pytest.approx(by_set)  # the card's test results, not made up
    assert set(bundled["ndcg@10"]) == {"msmarco", "dbpedia"}
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert SHIPPED_RERANKER in table and "msmarco nDCG@10" in table and "This machine:" in table


def test_models_measure_times_each_model_here_and_remembers_it(capsys):
    import json

    from winnow.cli import main
    from winnow.models.catalog import cpu_line, measured_here

    assert main(["models", "--measure", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert entries and all(e["speed"]["cpu"] == cpu_line() and e["speed"]["value"] > 0 for e in entries)
    assert {e["speed"]["unit"] for e in entries} == {"pairs/s", "docs/s"}
    assert set(measured_here()) == {e["name"] for e in entries}  # kept for this CPU: the next listing shows them
    assert main(["models"]) == 0 and "pairs/s" in capsys.readouterr().out
