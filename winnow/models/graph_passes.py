"""Rewrites of exported ONNX graphs that make ONNX Runtime's CPU kernels faster, results unchanged.

**Skip-LayerNorm, split.** ONNX Runtime's transformer fusions (export time) and its own graph optimizer
(session load) fuse ``Add(x, bias) -> Add(., residual) -> LayerNormalization`` into one contrib op,
``SkipLayerNormalization``. On CPU that kernel is the slow one: for one row of a MiniLM (90 tokens x 384)
onnxruntime 1.31 takes 139 µs for the fused op and 24 µs for the two Adds and the standard
``LayerNormalization`` (one thread, the AVX-512 VNNI development CPU), and a BERT layer has two of them: in
the shipped int8 reranker they were 28% of a row's time. :func:`split_skip_layer_norm` turns each one back into
the standard ops, and sessions are created with :data:`DISABLED_OPTIMIZERS` so that ONNX Runtime does not fuse
them again at load. The arithmetic is the same (float32 adds, then LayerNormalization with the same epsilon);
only the summation order inside the normalization may differ (~1e-6), which dynamic int8 quantization of the next
layer can magnify to ~0.03 of a reranker logit.
"""

from __future__ import annotations

# ONNX Runtime graph transformers not to run at session load (see the module docstring).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def split_skip_layer_norm(model) -> int:
    """Replace every single-output ``com.microsoft`` ``SkipLayerNormalization`` node of ``model`` (an
    ``onnx.ModelProto``, in place) by ``Add`` (its bias, where it has one), ``Add`` (the skip input) and an
    opset-17 ``LayerNormalization`` over the last axis. Returns how many were replaced. A node with extra
    outputs (mean, inverse std, the pre-norm sum) is left as it is."""
    from onnx import helper

    if not any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in model.opset_import):
        return 0  # LayerNormalization is a standard op from opset 17 on
    nodes = []
    replaced = 0
    for node in model.graph.node:
        outputs = [o for o in node.output if o]
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft" or len(outputs) != 1:
            nodes.append(node)
            continue
        x, skip, gamma = node.input[:3]
        beta = node.input[3] if len(node.input) > 3 and node.input[3] else ""
        bias = node.input[4] if len(node.input) > 4 and node.input[4] else ""
        eps = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), 1e-12)
        name = node.name or outputs[0]
        current = x
        if bias:
            nodes.append(helper.make_node("Add", [current, bias], [f"{name}/bias_added"], name=f"{name}/bias"))
            current = f"{name}/bias_added"
        nodes.append(helper.make_node("Add", [current, skip], [f"{name}/skip_added"], name=f"{name}/skip"))
        nodes.append(helper.make_node("LayerNormalization", [f"{name}/skip_added", gamma] + ([beta] if beta else []),
                                      [outputs[0]], name=f"{name}/norm", epsilon=float(eps), axis=-1))
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return replaced


def split_file(path) -> int:
    """:func:`split_skip_layer_norm` on an ONNX file, rewritten in place (beside, then renamed)."""
    import onnx

    from winnow.storage import replacing

    model = onnx.load(str(path))
    n = split_skip_layer_norm(model)
    if n:
        with replacing(path) as tmp:
            onnx.save(model, str(tmp))
    return n
