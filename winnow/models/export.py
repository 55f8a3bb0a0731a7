"""ONNX export and dynamic int8 quantization of encoder models, cached on disk.

``exported_model(resolved, task, backend)`` returns a folder holding ``model.onnx`` for the model,
building it on first use only: export from the torch weights (read-only; nothing is written beside
them), ONNX Runtime's transformer fusions (attention, GELU; skip-LayerNorm split back into standard ops,
see :mod:`winnow.models.graph_passes`), and for ``onnx-int8``
dynamic quantization with the config that suits this CPU (see :func:`quantization_config`). The
result is checked against torch on a few inputs, then moved into place with one rename, under::

    <cache root>/models-cache/<content hash>-<task>-<backend>[-<quantization>]/
        model.onnx  meta.json

The key is a hash of the model's full file contents, so a fine-tuned model never reuses another's
export. Cache root: ``$WINNOW_CACHE_DIR``, else ``$WINNOW_HOME``, else ``$XDG_CACHE_HOME/winnow`` or
``~/.cache/winnow``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from winnow.errors import InvalidArgumentError, MissingDependencyError
from winnow.models.backends import (
    Backend,
    QuantizationConfig,
    check_backend,
    quantization_config,
)
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import ResolvedModel
from winnow.storage import cache_root

log = logging.getLogger(__name__)

TASKS = ("embed", "score")  # embed: last hidden state of a bi-encoder; score: a cross-encoder's logits
EXPORT_VERSION = 2  # 2: skip-LayerNorm split after the fusions (winnow.models.graph_passes)
PREBUILT_MANIFEST = "winnow-onnx.json"  # in an ONNX-only model folder; see prebuilt_model()
PREBUILT_VERSION = 1
OPSET = 17


@dataclass(frozen=True)
class ExportedModel:
    """An ONNX model folder ready for ONNX Runtime; ``cached`` says whether it was already on disk."""

    path: Path  # the .onnx file
    folder: Path
    task: str
    backend: Backend
    quantization: str | None
    cached: bool



def export_dir(resolved: ResolvedModel, task: str, backend: str | Backend) -> Path:
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown export task {task!r}; choose one of: {', '.join(TASKS)}")
    backend = check_backend(backend)
    if not backend.is_onnx:
        raise InvalidArgumentError(f"backend {backend!r} has no export; exported backends: onnx, onnx-int8")
    key = f"{model_fingerprint(resolved.path)}-{task}-{backend}"
    if backend is Backend.ONNX_INT8:
        q = quantization_config()
        key += f"-{q.name}-{'-'.join(op.lower() for op in q.operators) or 'all'}"
    return cache_root() / "models-cache" / key


def prebuilt_model(folder: Path) -> ExportedModel | None:
    """The ONNX model of an ONNX-only model folder (winnow's shipped models), or None for a folder of
    torch weights. Such a folder holds ``winnow-onnx.json`` naming its file, task and backend."""
    manifest = Path(folder) / PREBUILT_MANIFEST
    if not manifest.is_file():
        return None
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if meta.get("format_version") != PREBUILT_VERSION:
            raise InvalidArgumentError(
                f"{manifest}: format_version {meta.get('format_version')!r} is not {PREBUILT_VERSION}; "
                "this winnow cannot read it"
            )
        model = Path(folder) / meta["file"]
        result = ExportedModel(model, Path(folder), meta["task"], check_backend(meta["backend"]), meta.get("quantization"), True)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(f"{manifest} is not a valid ONNX model manifest ({exc})") from exc
    if not model.is_file():
        raise InvalidArgumentError(f"{manifest} names {meta['file']!r}, which is missing from {folder}")
    return result


def exported_model(resolved: ResolvedModel, task: str, backend: str | Backend) -> ExportedModel:
    """The ONNX model for ``resolved`` (exported once, then read from the cache; an ONNX-only folder's
    own file as it is)."""
    backend = check_backend(backend)
    prebuilt = prebuilt_model(resolved.path)
    if prebuilt is not None:
        if (prebuilt.task, prebuilt.backend) != (task, backend):
            raise InvalidArgumentError(
                f"model {resolved.name!r} ships as one ONNX file ({prebuilt.task}, {prebuilt.backend}); "
                f"it cannot run as ({task}, {backend}): use backend 'auto' or {prebuilt.backend!r}"
            )
        return prebuilt
    folder = export_dir(resolved, task, backend)
    quant = quantization_config().name if backend is Backend.ONNX_INT8 else None
    model_file = folder / "model.onnx"
    if _current_export(folder):
        log.debug("using cached ONNX export %s", folder)
        return ExportedModel(model_file, folder, task, backend, quant, cached=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        start = time.perf_counter()
        log.info("exporting %s to ONNX (%s, %s), once: %s", resolved.name, task, backend, folder)
        meta = _build(resolved, task, backend, tmp)
        meta.update(export_version=EXPORT_VERSION, seconds=round(time.perf_counter() - start, 2))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the export is as readable as the model it came from
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same export first, or a stale folder is there
            if _current_export(folder):
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # a broken folder or an older export version: replaced, never kept
                stale = folder.with_name(f".{folder.name}.stale-{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
                    os.rename(folder, stale)
                try:
                    os.rename(tmp, folder)
                except OSError:
                    if not _current_export(folder):
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s in %.1f s", folder.name, meta["seconds"])
    return ExportedModel(folder / "model.onnx", folder, task, backend, quant, cached=False)


def _current_export(folder: Path) -> bool:
    """Whether ``folder`` holds a whole export of this :data:`EXPORT_VERSION`."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (folder / "model.onnx").is_file() and meta.get("export_version") == EXPORT_VERSION


# -- building ----------------------------------------------------------------------------------------
def _build(resolved: ResolvedModel, task: str, backend: Backend, out: Path) -> dict:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"exporting to ONNX needs onnx and onnxruntime ({exc.name} is missing): pip install 'winnow[onnx]'"
        ) from None
    if backend is Backend.ONNX_INT8:  # quantize the (cached) fp32 export: no second torch export or fusion pass
        base = exported_model(resolved, task, "onnx")
        meta = json.loads((base.folder / "meta.json").read_text(encoding="utf-8"))
        q = quantization_config()
        quantize(base.path, out / "model.onnx", q)
        meta.pop("max_abs_diff_vs_torch", None)
        meta.update(backend=backend.value, quantized_from=base.folder.name, quantization=_describe(q))
        return meta
    model = _load_torch(resolved, task)
    config = model.config
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if _uses_token_types(config) else [])
    output = "last_hidden_state" if task == "embed" else "logits"
    raw = out / "raw.onnx"
    _torch_export(model, names, output, raw)
    fused = out / "fused.onnx"
    fusions = _fuse(raw, fused, config)
    os.replace(fused if fusions is not None else raw, out / "model.onnx")
    from winnow.models.graph_passes import split_file

    split = split_file(out / "model.onnx")
    for leftover in (raw, fused):
        leftover.unlink(missing_ok=True)
    return {
        "model": resolved.name,
        "task": task,
        "backend": backend.value,
        "inputs": names,
        "output": output,
        "fusions": fusions or {},
        "skip_layer_norms_split": split,
        "onnxruntime": onnxruntime.__version__,
        "max_abs_diff_vs_torch": _check_against_torch(model, out / "model.onnx", names, output),
    }


def _describe(q: QuantizationConfig) -> dict:
    return {"name": q.name, "per_channel": q.per_channel, "reduce_range": q.reduce_range, "operators": list(q.operators)}


def _torch_export(model, names: list[str], output: str, target: Path) -> None:
    import warnings

    import torch

    sample = tuple(torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 8, dtype=torch.long)
                   for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes[output] = {0: "batch", 1: "tokens"} if output == "last_hidden_state" else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            _Wrapper(model, names, output),
            sample,
            str(target),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


class _Wrapper:
    """Call the transformers model with named inputs and return one tensor (what the exporter traces)."""

    def __new__(cls, model, names, output):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args):
                result = self.model(**dict(zip(names, args)), return_dict=True)
                return result[output]

        return Wrapped().eval()


def _load_torch(resolved: ResolvedModel, task: str):
    from transformers import AutoModel, AutoModelForSequenceClassification

    folder = str(resolved.path)
    kwargs = {"local_files_only": True, "attn_implementation": "eager"}  # eager: the graph ORT knows how to fuse
    cls = AutoModel if task == "embed" else AutoModelForSequenceClassification
    try:
        model = cls.from_pretrained(folder, **kwargs)
    except (TypeError, ValueError):
        kwargs.pop("attn_implementation")
        model = cls.from_pretrained(folder, **kwargs)
    return model.eval()


def _uses_token_types(config) -> bool:
    return int(getattr(config, "type_vocab_size", 0) or 0) > 1 or config.model_type in ("bert", "electra", "mpnet")


def _fuse(source: Path, target: Path, config) -> dict | None:
    """ONNX Runtime's transformer fusions (fewer, larger kernels); None when the model type is unknown."""
    model_type = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "distilbert": "bert"}
    kind = model_type.get(config.model_type)
    if kind is None:
        log.info("no ONNX Runtime fusions for model type %r; exporting unfused", config.model_type)
        return None
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with _quiet_root_logger():  # the fusion modules log every step at INFO on loggers of their own
            optimized = optimize_model(
                str(source),
                model_type=kind,
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                opt_level=1,
            )
            optimized.save_model_to_file(str(target))
            stats = optimized.get_fused_operator_statistics()
        return {k: int(v) for k, v in stats.items() if v}
    except Exception as exc:  # fusion is an optimization: an unfused model is still correct
        log.warning("ONNX Runtime fusion failed (%s: %s); exporting unfused", type(exc).__name__, exc)
        return None


def quantize(source: Path, target: Path, q: QuantizationConfig) -> None:
    """Dynamic int8 quantization of the ONNX file ``source`` into ``target`` with the config ``q``."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():  # the quantizer logs a pre-processing hint on the root logger
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=q.per_channel,
            reduce_range=q.reduce_range,
            op_types_to_quantize=list(q.operators) or None,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},  # fused contrib ops carry no type info
        )


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _check_against_torch(model, onnx_file: Path, names: list[str], output: str) -> float:
    """Run both on two short inputs; a broken export fails here, once, instead of giving wrong vectors."""
    import numpy as np
    import onnxruntime as ort
    import torch

    ids = np.array([[101, 7592, 2088, 2003, 1037, 3231, 102, 0], [101, 2023, 2003, 102, 0, 0, 0, 0]], dtype=np.int64)
    ids = np.minimum(ids, int(model.config.vocab_size) - 1)
    feed = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.zeros_like(ids)
    from winnow.models.graph_passes import DISABLED_OPTIMIZERS

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS))
    got = session.run([output], feed)[0]
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v) for k, v in feed.items()}, return_dict=True)[output].numpy()
    mask = feed["attention_mask"][:, :, None] if got.ndim == 3 else 1
    diff = float(np.max(np.abs((got - want) * mask)))
    if not diff < 1e-2:
        raise RuntimeError(f"ONNX export of {onnx_file} disagrees with torch (max abs diff {diff:.3g})")
    return diff
