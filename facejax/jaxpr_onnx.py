"""A JAX function as an ONNX graph, translated from its jaxpr, with a dynamic batch dimension.

`to_onnx(fn, example, ...)` traces `fn` with a symbolic batch (jax.export's shape polymorphism)
and writes each primitive as ONNX operators (opset 18); the arrays `fn` closes over become
initializers. It covers the primitives facejax's inference models lower to with plain
convolutions (`ops.conv.plain_forms`): convolutions, matrix products, elementwise arithmetic
and comparisons, selects, reshapes, transposes, broadcasts, stacks, slices, pads, reductions,
nested jit calls and scans (written out step by step); anything else is refused by name.

Why not a converter package: jax2onnx pins orbax-checkpoint below 0.11.37 (facejax needs 0.12),
and jax2tf + tf2onnx needs jax2tf's graph mode, which JAX 0.10 no longer has (its native
serialization is one XlaCallModule op that tf2onnx cannot convert).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
_ELEMENTWISE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max",
                "min": "Min", "pow": "Pow", "ge": "GreaterOrEqual", "gt": "Greater",
                "le": "LessOrEqual", "lt": "Less", "eq": "Equal", "and": "And", "or": "Or"}
_UNARY = {"logistic": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log", "neg": "Neg",
          "sqrt": "Sqrt", "abs": "Abs", "not": "Not", "sign": "Sign", "floor": "Floor",
          "ceil": "Ceil", "round": "Round", "erf": "Erf"}
_REDUCE = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin"}
_IDENTITY = ("copy", "copy_p", "optimization_barrier", "reduce_precision")
_CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
          "remat", "checkpoint")


def _onnx_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class _Graph:
    """The ONNX graph being built, and the names of the jaxpr's values in it."""

    def __init__(self, batch_symbol, batch_input: str):
        self.nodes, self.initializers, self._n = [], [], 0
        self.names: dict = {}
        self.batch_symbol = batch_symbol
        self._batch = None
        self._batch_input = batch_input

    def fresh(self, hint: str = "t") -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, dtype=None) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def batch(self) -> str:
        """An int64 [1] tensor holding the batch size at run time."""
        if self._batch is None:
            shape = self.node("Shape", [self._batch_input])
            self._batch = self.node("Slice", [shape, self.const([0], np.int64),
                                              self.const([1], np.int64)])
        return self._batch

    def shape(self, dims) -> str:
        """An int64 tensor of `dims`, the symbolic batch filled in at run time."""
        if all(isinstance(d, (int, np.integer)) for d in dims):
            return self.const([int(d) for d in dims], np.int64)
        pieces = []
        for d in dims:
            if isinstance(d, (int, np.integer)):
                pieces.append(self.const([int(d)], np.int64))
            elif d == self.batch_symbol:
                pieces.append(self.batch())
            else:
                raise NotImplementedError(f"a dimension {d} other than the batch")
        return self.node("Concat", pieces, axis=0)

    def read(self, atom) -> str:
        if isinstance(atom, jax.extend.core.Literal):
            return self.const(np.asarray(atom.val, dtype=atom.aval.dtype))
        return self.names[atom]


def _conv(g: _Graph, eqn, x: str, w: str) -> str:
    p = eqn.params
    dn = p["dimension_numbers"]
    if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
        raise NotImplementedError("conv_general_dilated with input dilation or batch groups")
    pads = list(p["padding"])
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise NotImplementedError("conv_general_dilated with negative padding")
    x = g.node("Transpose", [x], perm=list(dn.lhs_spec))
    w = g.node("Transpose", [w], perm=list(dn.rhs_spec))
    y = g.node("Conv", [x, w], strides=list(p["window_strides"]),
               dilations=list(p["rhs_dilation"]), group=int(p["feature_group_count"]),
               pads=[lo for lo, _ in pads] + [hi for _, hi in pads])
    # y's axes are (batch, feature, spatial...) = output dims out_spec[0], out_spec[1], ...
    back = [list(dn.out_spec).index(i) for i in range(len(dn.out_spec))]
    return g.node("Transpose", [y], perm=back)


def _dot(g: _Graph, eqn, x: str, w: str) -> str:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
    if lb or rb or len(lc) != 1 or lc[0] != lhs.ndim - 1 or rhs.ndim != 2:
        raise NotImplementedError(f"dot_general with dimension numbers {eqn.params['dimension_numbers']}")
    if rc[0] == 1:
        w = g.node("Transpose", [w], perm=[1, 0])
    return g.node("MatMul", [x, w])


def _emit(g: _Graph, eqn, ins: list[str]) -> list[str]:
    name, p = eqn.primitive.name, eqn.params
    out_aval = eqn.outvars[0].aval
    if name in _ELEMENTWISE:
        return [g.node(_ELEMENTWISE[name], ins)]
    if name == "ne":
        return [g.node("Not", [g.node("Equal", ins)])]
    if name in _UNARY:
        return [g.node(_UNARY[name], ins)]
    if name == "rsqrt":
        return [g.node("Reciprocal", [g.node("Sqrt", ins)])]
    if name == "square":
        return [g.node("Mul", [ins[0], ins[0]])]
    if name == "integer_pow":
        return [g.node("Pow", [ins[0], g.const(p["y"], eqn.invars[0].aval.dtype)])]
    if name in _IDENTITY:
        return list(ins)
    if name == "convert_element_type":
        return [g.node("Cast", ins, to=_onnx_type(p["new_dtype"]))]
    if name == "select_n":
        if len(ins) != 3:
            raise NotImplementedError("select_n of more than two cases")
        pred = ins[0]
        if eqn.invars[0].aval.dtype != np.bool_:
            pred = g.node("Cast", [pred], to=TensorProto.BOOL)
        return [g.node("Where", [pred, ins[2], ins[1]])]
    if name == "clamp":
        return [g.node("Clip", [ins[1], ins[0], ins[2]])]
    if name == "reshape":
        return [g.node("Reshape", [ins[0], g.shape(p["new_sizes"])])]
    if name == "transpose":
        return [g.node("Transpose", ins, perm=list(p["permutation"]))]
    if name == "squeeze":
        return [g.node("Squeeze", [ins[0], g.const(list(p["dimensions"]), np.int64)])]
    if name == "broadcast_in_dim":
        shape = list(p["shape"])
        ranked = [1] * len(shape)
        for src, dst in enumerate(p["broadcast_dimensions"]):
            ranked[dst] = eqn.invars[0].aval.shape[src]
        x = g.node("Reshape", [ins[0], g.shape(ranked)])
        return [g.node("Expand", [x, g.shape(shape)])]
    if name == "concatenate":
        return [g.node("Concat", ins, axis=int(p["dimension"]))]
    if name == "stack":
        axis = g.const([int(p["axis"])], np.int64)
        return [g.node("Concat", [g.node("Unsqueeze", [x, axis]) for x in ins],
                       axis=int(p["axis"]))]
    if name == "pad":
        config = p["padding_config"]
        if any(lo < 0 or hi < 0 or interior for lo, hi, interior in config):
            raise NotImplementedError("pad with negative or interior padding")
        pads = [lo for lo, _, _ in config] + [hi for _, hi, _ in config]
        return [g.node("Pad", [ins[0], g.const(pads, np.int64), ins[1]])]
    if name == "slice":
        strides = p["strides"] or [1] * len(p["start_indices"])
        limits = [d if isinstance(d, (int, np.integer)) else np.iinfo(np.int64).max
                  for d in p["limit_indices"]]
        return [g.node("Slice", [ins[0], g.const(list(p["start_indices"]), np.int64),
                                 g.const(limits, np.int64),
                                 g.const(list(range(len(limits))), np.int64),
                                 g.const(list(strides), np.int64)])]
    if name == "rev":
        x = ins[0]
        for axis in p["dimensions"]:
            x = g.node("Slice", [x, g.const([-1], np.int64),
                                 g.const([np.iinfo(np.int64).min], np.int64),
                                 g.const([axis], np.int64), g.const([-1], np.int64)])
        return [x]
    if name in _REDUCE:
        return [g.node(_REDUCE[name], [ins[0], g.const(list(p["axes"]), np.int64)], keepdims=0)]
    if name == "conv_general_dilated":
        return [_conv(g, eqn, *ins)]
    if name == "dot_general":
        out = _dot(g, eqn, *ins)
        if out_aval.dtype != eqn.invars[0].aval.dtype:
            out = g.node("Cast", [out], to=_onnx_type(out_aval.dtype))
        return [out]
    raise NotImplementedError(f"the JAX primitive {name!r}")


def _scan(g: _Graph, eqn, ins: list[str]) -> list[str]:
    """A `lax.scan` written out: its body once per step, on each step's slice of the scanned
    inputs, the per-step outputs stacked, so the graph holds only the operators the rest of
    this translator writes (no ONNX Loop and its subgraph)."""
    p = eqn.params
    n_consts, n_carry, body = p["num_consts"], p["num_carry"], p["jaxpr"]
    consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
    steps = range(p["length"] - 1, -1, -1) if p["reverse"] else range(p["length"])
    ys = {}
    for i in steps:
        x_i = [g.node("Gather", [x, g.const(i, np.int64)], axis=0) for x in xs]
        outs = _walk(g, body.jaxpr, body.consts, consts + carry + x_i)
        carry, ys[i] = outs[:n_carry], outs[n_carry:]
    axis = g.const([0], np.int64)
    stacked = [g.node("Concat", [g.node("Unsqueeze", [ys[i][k], axis])
                                 for i in range(p["length"])], axis=0)
               for k in range(len(eqn.outvars) - n_carry)]
    return carry + stacked


def _walk(g: _Graph, jaxpr, consts, inputs: list[str]) -> list[str]:
    for var, value in zip(jaxpr.constvars, consts):
        g.names[var] = g.const(np.asarray(value))
    for var, name in zip(jaxpr.invars, inputs):
        g.names[var] = name
    for eqn in jaxpr.eqns:
        ins = [g.read(v) for v in eqn.invars]
        sub = next((eqn.params[k] for k in ("jaxpr", "call_jaxpr", "fun_jaxpr")
                    if k in eqn.params), None)
        if eqn.primitive.name in _CALLS and sub is not None:
            closed = sub if hasattr(sub, "consts") else None
            inner = closed.jaxpr if closed is not None else sub
            outs = _walk(g, inner, closed.consts if closed is not None else (), ins)
        elif eqn.primitive.name == "scan":
            outs = _scan(g, eqn, ins)
        else:
            outs = _emit(g, eqn, ins)
        for var, name in zip(eqn.outvars, outs):
            g.names[var] = name
    return [g.read(v) for v in jaxpr.outvars]


def to_onnx(fn: Callable, example: jax.ShapeDtypeStruct, input_name: str,
            output_names: Sequence[str]) -> onnx.ModelProto:
    """`fn(x)` (x: `example`'s shape with any batch; returns a tuple of arrays) as a checked
    ONNX model with input `input_name` and outputs `output_names`, batch dimension "batch".

    Raises:
      NotImplementedError: `fn` uses a primitive or form this translator does not cover.
    """
    batch = jax.export.symbolic_shape("batch")[0]
    spec = jax.ShapeDtypeStruct((batch,) + tuple(example.shape[1:]), example.dtype)
    closed = jax.make_jaxpr(fn)(spec)
    g = _Graph(batch, input_name)
    outs = _walk(g, closed.jaxpr, closed.consts, [input_name])
    if len(outs) != len(output_names):
        raise ValueError(f"{len(outs)} outputs for {len(output_names)} names")
    for out, name in zip(outs, output_names):
        g.nodes.append(helper.make_node("Identity", [out], [name]))

    def info(name, aval):
        dims = [int(d) if isinstance(d, (int, np.integer)) else "batch" for d in aval.shape]
        return helper.make_tensor_value_info(name, _onnx_type(aval.dtype), dims)

    graph = helper.make_graph(
        g.nodes, "facejax", [info(input_name, spec)],
        [info(n, v.aval) for n, v in zip(output_names, closed.jaxpr.outvars)],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facejax")
    model.ir_version = 9  # what onnxruntime 1.17+ and DeepFaceLive's runtimes read
    onnx.checker.check_model(model)
    return model
