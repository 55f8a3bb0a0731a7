"""Session fixtures shared by the test suite: real models and a real collection, each built once.

- ``bi_encoder``: the bundled all-MiniLM-L6-v2 :class:`~winnow.encode.bi_encoder.BiEncoder`, loaded once.
- ``tiny_cross_encoder_path``: a cross-encoder made of the bundled weights and a fresh one-logit head
  (``torch.manual_seed(0)``), saved once. Its scores are arbitrary: use it to test mechanics, not quality.
- ``demo_collection``: ``examples/demo_corpus.jsonl`` (40 documents) indexed once with the default model
  and chunking. Shared and READ-ONLY: tests that write build their own collection.
- ``demo_documents``: the documents of the demo corpus, in file order.
- ``shared_data_dir``: ``<repo>/../shared/data`` (BEIR sets, training pairs); skips when absent.
- ``colbert_model_path``: an untrained ColBERT folder (the bundled weights and a fresh orthogonal 96-dim
  projection, seed 0), saved once: real token vectors of arbitrary quality, for late-interaction mechanics.

Everything is written under pytest's ``tmp_path_factory``: ``WINNOW_HOME`` and ``WINNOW_CACHE_DIR`` point
there for the whole session (autouse ``isolated_winnow_dirs``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before numpy/torch load: one BLAS thread, no tokenizer thread pool (2 shared cores).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "examples" / "demo_corpus.jsonl"
SHARED_DATA = REPO.parent / "shared" / "data"
BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session", autouse=True)
def isolated_winnow_dirs(tmp_path_factory):
    """Point winnow's default folders (collections home, model-export cache) into the session's tmp dir,
    so no test writes under ~ even where it forgets to pass ``home=``; subprocesses inherit this."""
    patch = pytest.MonkeyPatch()
    patch.setenv("WINNOW_HOME", str(tmp_path_factory.mktemp("winnow-home")))
    patch.setenv("WINNOW_CACHE_DIR", str(tmp_path_factory.mktemp("winnow-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def model_export_cache(tmp_path_factory):
    """ONNX exports of the default backend (winnow.models.export) go under pytest's tmp folder, once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINNOW_CACHE_DIR", str(tmp_path_factory.mktemp("winnow-cache")))
        yield


@pytest.fixture(scope="session")
def bi_encoder():
    from winnow.encode.bi_encoder import BiEncoder

    encoder = BiEncoder(BUNDLED_MODEL)
    encoder.dim  # load the weights now, once
    return encoder


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory) -> Path:
    import torch
    from sentence_transformers import CrossEncoder

    from winnow.models.resolve import resolve_model

    path = tmp_path_factory.mktemp("models") / "tiny-cross-encoder"
    torch.manual_seed(0)
    model = CrossEncoder(str(resolve_model(BUNDLED_MODEL).path), num_labels=1, local_files_only=True)
    model.save(str(path))
    return path


@pytest.fixture(scope="session")
def colbert_model_path(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    from winnow.encode.colbert import ColBERTConfig, build_module, save_model
    from winnow.models.resolve import resolve_model

    base = resolve_model(BUNDLED_MODEL).path
    config = ColBERTConfig(query_length=16, document_length=64)
    path = tmp_path_factory.mktemp("models") / "untrained-colbert"
    save_model(build_module(base, config, seed=0), AutoTokenizer.from_pretrained(str(base), local_files_only=True), config, path)
    return path


@pytest.fixture(scope="session")
def demo_documents():
    from winnow.corpus import read_documents

    return read_documents(DEMO_CORPUS)


@pytest.fixture(scope="session")
def demo_collection(tmp_path_factory, demo_documents):
    from winnow.collection import Collection

    home = tmp_path_factory.mktemp("demo-home")
    col = Collection.create("demo", home=home)
    col.add(demo_documents)
    yield col
    col.close()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA
