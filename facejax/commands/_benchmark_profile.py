"""`facejax benchmark profile`: where a family's training step spends its time. The compiled
step runs under `jax.profiler`; every XLA operation's time in the trace is summed and grouped
by the model layer its HLO metadata names (`op_name`), forward and backward apart, with the
kinds of operation each group's time went to (products, fusions, copies)."""

from __future__ import annotations

import collections
import glob
import os
import re
import statistics
import tempfile
import time

# A path component naming a model (a Flax module: a class name) as JAX's transformations
# wrap it: jvp(PatchGAN), transpose(jvp(SAEHD.decode)); not a jitted function, jvp(_pad).
_WRAPPED_MODEL = re.compile(r"^(?:[\w-]+\()+([A-Z][\w.]*)\)+$")
# Path components that name control flow, not a layer.
_NOT_LAYERS = {"while", "body", "cond", "closed_call", "checkpoint", "remat"}
# An HLO instruction's line in the compiled program's text, and its metadata's op_name.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPERAND = re.compile(r"%([\w.\-]+)")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
# A computation's first line: `%fused_computation.40 (param_0: f32[...]) -> f32[...] {`.
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")


def op_layer(op_name: str) -> tuple[str, str]:
    """(layer, pass) of an HLO operation from its metadata's op_name: the layer is the model
    and up to two levels of its submodules (`ResnetGenerator/UpConv_1`,
    `SAEHD.decode/decoder_b/Upscale_5`), or the model and the primitive when the operation is
    the model's own (`PatchGAN (add)`), or `- primitive` outside every model (the losses, the
    optimizer); the pass is "bwd" inside a transpose (the gradients), else "fwd"."""
    if not op_name:
        return "(no metadata)", "fwd"
    stage = "bwd" if "transpose(" in op_name else "fwd"
    parts = [p for p in op_name.split("/")[1:] if p]  # the first is the jitted function
    models = [i for i, p in enumerate(parts) if _WRAPPED_MODEL.match(p)]
    if not models:
        return f"- {parts[-1] if parts else op_name}", stage
    i = models[-1]
    model = _WRAPPED_MODEL.match(parts[i]).group(1)
    modules = [p for p in parts[i + 1:-1] if p not in _NOT_LAYERS and "(" not in p][:2]
    if modules:
        return "/".join([model, *modules]), stage
    return f"{model} ({parts[-1] if i + 1 < len(parts) else 'call'})", stage


def instruction_op_names(hlo_text: str) -> dict[str, str]:
    """{instruction name: its metadata's op_name} of an HLO text. An instruction without one
    (XLA's own fusions and layout copies often carry none) takes the first op_name in the
    computation it calls, else an operand's (a backward one first; followed back through such
    instructions), else ""."""
    own, calls, operands, first_in = {}, {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, rest = m.groups()
        op_name = _OP_NAME.search(rest)
        own[name] = op_name.group(1) if op_name else ""
        if op_name and computation and computation not in first_in:
            first_in[computation] = op_name.group(1)
        called = _CALLS.search(rest)
        calls[name] = called.group(1) if called else None
        operands[name] = _OPERAND.findall(rest.split("), ")[0])
    names = {n: op or first_in.get(calls[n], "") for n, op in own.items()}
    for _ in range(8):  # chains of unnamed copies and fusions are short
        unnamed = [n for n, op in names.items() if not op]
        for n in unnamed:
            named = [names[o] for o in operands[n] if names.get(o)]
            # A weight gradient's product reads an activation and a gradient: it is backward.
            names[n] = next((op for op in named if "transpose(" in op), named[0] if named else "")
    return names


def op_kind(instruction: str) -> str:
    """An instruction's kind: its name without the numbering (`ynn_fusion.12` -> ynn_fusion)."""
    return re.sub(r"\.\d+$", "", instruction)


def split_by_layer(event_ms: dict[str, float], op_names: dict[str, str], steps: int,
                   top: int) -> dict:
    """The profile's figures from {instruction: ms summed over `steps` steps}: the summed op
    ms per step, the `top` layers by time (ms, share, their three largest kinds) and the
    kinds overall."""
    layers, kinds = collections.Counter(), collections.Counter()
    layer_kinds = collections.defaultdict(collections.Counter)
    for name, ms in event_ms.items():
        key = op_layer(op_names[name])
        layers[key] += ms / steps
        kinds[op_kind(name)] += ms / steps
        layer_kinds[key][op_kind(name)] += ms / steps
    total = sum(layers.values())
    share = lambda ms: round(ms / total, 4) if total else 0.0
    return {"op_ms_per_step": round(total, 1),
            "layers": [{"layer": layer, "pass": stage, "ms": round(ms, 1), "share": share(ms),
                        "kinds": {k: round(v, 1) for k, v in
                                  layer_kinds[(layer, stage)].most_common(3)}}
                       for (layer, stage), ms in layers.most_common(top)],
            "kinds": [{"kind": k, "ms": round(ms, 1), "share": share(ms)}
                      for k, ms in kinds.most_common(top)]}


def traced_op_ms(trace_dir: str, instructions) -> dict[str, float]:
    """{instruction: summed ms} of the XLA operations in the trace written to `trace_dir`
    (events of other names, the executor's and the thread pool's own, are left out)."""
    import jax
    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"jax.profiler wrote no trace under {trace_dir}")
    data = jax.profiler.ProfileData.from_file(max(paths, key=os.path.getmtime))
    totals = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in instructions:
                    totals[event.name] += event.duration_ns / 1e6
    return totals


def profile_step(step, state, batch, key, steps: int, warmup: int,
                 instructions) -> tuple[dict, float]:
    """({instruction: ms summed over `steps` traced steps}, their median wall ms per step)
    of a compiled step whose program has `instructions`, after `warmup` untimed steps."""
    import jax
    for _ in range(warmup + 1):
        state, m = step(state, batch, key)
    jax.block_until_ready(m)
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # the step's own operations only
    times = []
    with tempfile.TemporaryDirectory(prefix="facejax-profile-") as trace_dir:
        jax.profiler.start_trace(trace_dir, profiler_options=options)
        try:
            for _ in range(steps):
                t = time.perf_counter()
                state, m = step(state, batch, key)
                jax.block_until_ready(m)
                times.append((time.perf_counter() - t) * 1e3)
        finally:
            jax.profiler.stop_trace()
        return traced_op_ms(trace_dir, instructions), statistics.median(times)


def bench_profile(config, face_folder, steps: int, warmup: int, top: int) -> dict:
    """The profile benchmark's figures for `config` on the faces of `face_folder(load size)`."""
    from facejax.commands import _benchmark_train as benchmark_train
    with benchmark_train.prepared_step(config, face_folder) as p:
        op_names = instruction_op_names(p.step["step"].as_text())
        event_ms, step_ms = profile_step(p.step["step"], p.state, p.batch, p.key, steps, warmup,
                                         set(op_names))
        split = split_by_layer(event_ms, op_names, steps, top)
    return {"benchmark": "profile", "task": config.task, "size": config.model.size,
            "batch_per_identity": config.batch_size, "steps": steps,
            "step_ms": round(step_ms, 1), "compile_s": round(p.step["compile_s"], 1),
            "executed_gflop_per_step": round(p.step["executed_gflop"], 1), **split}


def profile_table(result: dict) -> str:
    """The benchmark record's table of a profile run."""
    lines = [f"step {result['step_ms']} ms; XLA operations {result['op_ms_per_step']} ms a step "
             "(summed over threads)", "",
             "| layer | pass | ms | share | largest kinds (ms) |", "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['pass']} | {r['ms']} | {r['share']:.1%} | "
              + ", ".join(f"{k} {v}" for k, v in r["kinds"].items()) + " |"
              for r in result["layers"]]
    lines += ["", "| operation kind | ms | share |", "|---|---|---|"]
    lines += [f"| {r['kind']} | {r['ms']} | {r['share']:.1%} |" for r in result["kinds"]]
    return "\n".join(lines)
