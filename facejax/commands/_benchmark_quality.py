"""`facejax benchmark quality`: the equal-budget swap-quality protocol of docs/benchmarks.md,
end to end. A and B are extracted once (WORKDIR/faces_a, faces_b) and their datasets prepared;
each experiment then trains in its own child process (`facejax train`) pinned to one core, for
the same wall time, counted from its start (compilation included, as a user's run spends it):
at the budget's end it gets SIGTERM and, as on any stop request, saves a checkpoint and exits.
Runs go in parallel, one per core of --cores, in turns when there are more runs than cores.
Each run is then evaluated (`facejax evaluate --held_out`, on its core) on the held-out tail
of A and B, and once more with --talking as B (a clip whose mouth moves: the mouth figures of
B→A then follow speech, which the held-out tail of a nearly closed mouth cannot show). One
table (WORKDIR/quality.md, and quality.json) has each run's steps and figures; each
evaluation's folder its report and sample grids.

Experiments, comma-separated: `[LABEL=]NAME[:VARIANT][+KEY=VALUE...]`, each `+KEY=VALUE` passed
as `--config.KEY=VALUE` (values without commas or '+'). With --continue_from=EARLIER (an
earlier quality WORKDIR), NAME is instead a LABEL of that workdir: its run is copied into
this WORKDIR and trains on for --minutes with its flags and the new overrides (DeepFaceLab's
late-run recipe: `late=saehd_df64+augment.random_warp=False+loss.gan_power=0.1`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from facejax import files
from facejax.errors import RunError, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = "quality.json"
GRACE_S = 900  # after SIGTERM: the last step, the stop's preview and metrics, the checkpoint


@dataclasses.dataclass(frozen=True)
class Experiment:
    label: str            # the run's name in WORKDIR/runs, eval and the table
    config: str           # --config's value (NAME[:VARIANT]), or an earlier run's LABEL
    overrides: tuple      # ("--config.KEY=VALUE", ...)


def parse_experiments(text: str, flag: str = "--experiments") -> list[Experiment]:
    """The experiments of `[LABEL=]NAME[:VARIANT][+KEY=VALUE...]`, comma-separated."""
    out = []
    for entry in [e.strip() for e in text.split(",") if e.strip()]:
        # A LABEL= is an "=" before the first "+" (the overrides have theirs after it).
        label, _, spec = entry.partition("=") if "=" in entry.split("+")[0] else ("", "", entry)
        base, *pairs = spec.split("+")
        if not base or any("=" not in p or p.startswith("=") for p in pairs):
            raise UserError(f"{flag}={text}: {entry!r} is not [LABEL=]NAME[:VARIANT]"
                            "[+KEY=VALUE...]")
        label = label or base.replace(":", "_").replace("/", "_")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", label) or label.startswith("."):
            raise UserError(f"{flag}={text}: label {label!r}: letters, digits, _ . - only")
        out.append(Experiment(label, base, tuple(f"--config.{p}" for p in pairs)))
    if not out:
        raise UserError(f"{flag}: name at least one experiment")
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"{flag}={text}: two runs named {max(labels, key=labels.count)!r}; "
                        "give one a LABEL=")
    return out


def check_experiment(exp: Experiment, flag: str = "--experiments") -> None:
    """Fails now, not after extraction, on an unknown experiment, variant or config key."""
    import importlib.util
    from facejax import cli
    path, _, variant = cli.experiment_path(exp.config).partition(":")
    if not os.path.isfile(path):
        raise UserError(f"{flag}: {exp.config!r} is no experiment (one of "
                        f"{', '.join(cli.experiments())}, or a file)")
    spec = importlib.util.spec_from_file_location("_quality_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        config = module.get_config(variant) if variant else module.get_config()
    except ValueError as e:
        raise UserError(f"{flag}: {exp.config}: {e}")
    for override in exp.overrides:
        node = config
        for key in override[len("--config."):].split("=")[0].split("."):
            if not hasattr(node, "keys") or key not in node:
                raise UserError(f"{flag}: {exp.label}: {override}: {exp.config} has no such key")
            node = node[key]


def parse_cores(text: str) -> list[int]:
    """--cores (`0,1` or `0-3`; empty: every core this process may use)."""
    allowed = sorted(os.sched_getaffinity(0))
    if not text:
        return allowed
    try:
        cores = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cores += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise UserError(f"--cores={text}: expected core numbers, e.g. 0,1 or 0-3")
    if not cores or len(set(cores)) != len(cores) or not set(cores) <= set(allowed):
        raise UserError(f"--cores={text}: each at most once, among {allowed}")
    return cores


def extract_both(a: str, b: str, workdir: str, size: int) -> dict:
    """A and B extracted (once: a rerun reuses them) and their datasets prepared, outside any
    run's budget. Returns {"a": folder, "b": folder}."""
    from facejax.data import extract, tfds_faces
    folders = {}
    for name, clip in (("a", a), ("b", b)):
        folders[name] = os.path.join(workdir, f"faces_{name}")
        summary = extract.extract([clip], folders[name],
                                  extract.ExtractOptions(size=size, identity=name),
                                  verbose=False)
        if not summary.get("faces_kept"):
            raise UserError(f"--{name} {clip}: no face extracted")
        tfds_faces.builder(folders[name])
        print(f"extracted {name}: {summary['faces_kept']} faces from {clip}", flush=True)
    return folders


def _child(args: list[str], core: int, log: str) -> subprocess.Popen:
    """`facejax ARGS` of this checkout in a child process pinned to `core`, output to `log`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "facejax", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def _last_line(log: str) -> str:
    with open(log) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    return lines[-1] if lines else "no output"


@dataclasses.dataclass(frozen=True)
class _Job:
    label: str
    item: object  # what start() needs


def in_turns(jobs: list, cores: list[int], start, limit_s: float | None = None) -> dict:
    """Runs `jobs` one per core, in turns of len(cores) (`start(job, core)` -> Popen), the
    jobs of a turn at once. A job still running `limit_s` after its start gets SIGTERM (a
    training run's own stop: it saves a checkpoint and exits 0), and is killed GRACE_S after
    that. Returns {job label: exit status}."""
    out = {}
    for i in range(0, len(jobs), len(cores)):
        turn = {job.label: (start(job, core), time.monotonic())
                for job, core in zip(jobs[i:i + len(cores)], cores)}
        stopped = set()
        while any(proc.poll() is None for proc, _ in turn.values()):
            for label, (proc, began) in turn.items():
                late = time.monotonic() - began - (limit_s if limit_s is not None else math.inf)
                if proc.poll() is None and late >= 0 and label not in stopped:
                    proc.send_signal(signal.SIGTERM)
                    stopped.add(label)
                elif proc.poll() is None and late > GRACE_S:
                    proc.kill()
            time.sleep(0.2)
        out.update({label: proc.returncode for label, (proc, _) in turn.items()})
    return out


def train_all(runs: list, cores: list[int], minutes: float, workdir: str) -> dict:
    """Trains each of `runs` ((label, facejax train args)) for `minutes` of wall time on its
    core. Returns {label: None, or the failing run's last line}."""
    def start(job, core):
        print(f"training {job.label} on core {core} for {minutes:g} min", flush=True)
        return _child(job.item, core, os.path.join(workdir, "logs", f"{job.label}.train.log"))

    status = in_turns([_Job(label, args) for label, args in runs], cores, start, minutes * 60)
    return {label: None if rc == 0 else "training failed: " + _last_line(
        os.path.join(workdir, "logs", f"{label}.train.log")) for label, rc in status.items()}


def evaluate_all(labels: list[str], cores: list[int], workdir: str, clips: dict,
                 max_frames: int) -> dict:
    """Evaluates each run on the held-out tail of A and B (`eval/LABEL`) and with the talking
    clip as B (`eval_talking/LABEL`), each on a core. Returns {label: {kind: metrics.json's
    figures or an error line}}."""
    kinds = {"held_out": ("eval", clips["b"], ["--held_out"])}
    if clips.get("talking"):
        kinds["talking"] = ("eval_talking", clips["talking"], [])
    jobs = [_Job(f"{label}/{kind}", (label, kind)) for label in labels for kind in kinds]

    def start(job, core):
        label, kind = job.item
        folder, b, extra = kinds[kind]
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)
        args = ["evaluate", f"--model={os.path.join(workdir, 'runs', label)}",
                f"--max_frames={max_frames}",
                f"--a={clips['a']}", f"--b={b}", *extra,
                f"--output={os.path.join(workdir, folder, label)}"]
        return _child(args, core, os.path.join(workdir, "logs", f"{label}.{kind}.log"))

    out = {}
    for key, rc in in_turns(jobs, cores, start).items():
        label, kind = key.split("/")
        log = os.path.join(workdir, "logs", f"{label}.{kind}.log")
        out.setdefault(label, {})[kind] = (
            files.read_json(os.path.join(workdir, kinds[kind][0], label, "metrics.json"))
            if rc == 0 else f"evaluation failed: {_last_line(log)}")
    return out


@dataclasses.dataclass
class QualityOptions:
    """The flags of `facejax benchmark quality`."""
    workdir: str
    experiments: str
    a: str = ""
    b: str = ""
    talking: str = ""         # a second B whose mouth moves ("": none)
    minutes: float = 40.0
    cores: str = ""
    extract_size: int = 128
    max_frames: int = 150     # per clip evaluated
    continue_from: str = ""   # an earlier quality WORKDIR whose runs train on


def _plan_fresh(opts: QualityOptions, exps: list) -> tuple[dict, list]:
    """(clips, [(label, entry)]) of new runs: A and B extracted into WORKDIR."""
    from facejax.faces import video
    for name in ("a", "b"):
        if not getattr(opts, name):
            raise UserError(f"--{name}: quality needs --a=VIDEO and --b=VIDEO")
    for exp in exps:
        check_experiment(exp)
    for flag, path in (("--a", opts.a), ("--b", opts.b), ("--talking", opts.talking)):
        if path:
            try:
                video.FrameSource(path)
            except UserError as e:
                raise UserError(f"{flag}: {e}")
    clips = {"a": os.path.abspath(opts.a), "b": os.path.abspath(opts.b),
             "talking": os.path.abspath(opts.talking) if opts.talking else ""}
    faces = {n: os.path.join(opts.workdir, f"faces_{n}") for n in ("a", "b")}
    return clips, [(e.label, {"config": e.config, "overrides": list(e.overrides),
                              "train_args": [f"--config={e.config}",
                                             f"--config.data.a={faces['a']}",
                                             f"--config.data.b={faces['b']}", *e.overrides]})
                   for e in exps]


def _plan_continued(opts: QualityOptions, exps: list) -> tuple[dict, list]:
    """(clips, [(label, entry)]) of runs continued from --continue_from's, copied here."""
    earlier = os.path.abspath(opts.continue_from)
    if opts.a or opts.b:
        raise UserError("--a/--b: a continued run keeps the clips of --continue_from")
    if earlier == os.path.abspath(opts.workdir):
        raise UserError(f"--continue_from={opts.continue_from}: give a new --workdir")
    path = os.path.join(earlier, RECORD)
    if not os.path.isfile(path):
        raise UserError(f"--continue_from={opts.continue_from}: no {RECORD} (not a "
                        "`facejax benchmark quality` workdir)")
    record = files.read_json(path, "the earlier benchmark's record")
    clips = dict(record["clips"], **({"talking": os.path.abspath(opts.talking)}
                                     if opts.talking else {}))
    plan = []
    for e in exps:
        old = record["runs"].get(e.config)
        if old is None or not os.path.isdir(os.path.join(earlier, "runs", e.config)):
            raise UserError(f"--experiments: {e.config!r} is no run of {opts.continue_from} "
                            f"(runs: {', '.join(record['runs'])})")
        plan.append((e.label, {
            "config": old["config"], "continued_from": os.path.join(earlier, "runs", e.config),
            "overrides": old["overrides"] + list(e.overrides),
            "train_args": old["train_args"] + list(e.overrides)}))
    return clips, plan


COLUMNS = (("faces", "faces"), ("steps", "steps"),
           ("distance_to_target", "distance to target"),
           ("distance_to_source", "distance to source"), ("identity_retrieval", "retrieval"),
           ("share_under_0.6", "share < 0.6"), ("landmark_nme", "landmark NME"),
           ("mouth_error", "mouth error"), ("mouth_correlation", "mouth corr."),
           ("jitter_ratio", "jitter ratio"), ("sharpness_ratio", "sharpness ratio"),
           ("detail_correlation", "detail corr. (rec.)"), ("ssim", "SSIM rec."),
           ("psnr", "PSNR rec."))


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def headline(metrics: dict) -> dict:
    """{direction: {column: figure}} of an evaluation's metrics.json."""
    from facejax import report
    out = report.summary(metrics)
    for d, row in out.items():
        j = row["jitter_source"]
        row["jitter_ratio"] = row["jitter_swap"] / j if j and math.isfinite(j) else math.nan
        row["steps"] = metrics["step"]
    return out


def table(record: dict) -> str:
    """The Markdown table of a record: per run B→A, with A→B in brackets."""
    px = {r["held_out"]["b2a"]["sharpness_px"] for r in record["runs"].values()
          if isinstance(r.get("held_out"), dict)}
    talking = bool(record["clips"].get("talking"))
    names = [n if k != "sharpness_ratio" else f"{n} at {'/'.join(map(str, sorted(px)))} px"
             for k, n in COLUMNS]
    names += ["talking B→A mouth error", "talking mouth corr."] if talking else []
    lines = ["| run | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, run in record["runs"].items():
        h, t = run.get("held_out"), run.get("talking")
        if not isinstance(h, dict):
            lines.append(f"| {label} | {run.get('error') or h} |" + " |" * (len(names) - 1))
            continue
        cells = [f"{_cell(h['b2a'][k])} ({_cell(h['a2b'][k])})" if k != "steps"
                 else _cell(h["b2a"][k]) for k, _ in COLUMNS]
        if talking:
            cells += ([_cell(t["b2a"][k]) for k in ("mouth_error", "mouth_correlation")]
                      if isinstance(t, dict) else [str(t), ""])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_quality(opts: QualityOptions) -> dict:
    """Runs the protocol (module docstring); writes WORKDIR/quality.{json,md}; returns the
    record."""
    if not opts.workdir:
        raise UserError("--workdir: quality needs a folder for its faces, runs and tables")
    if not opts.minutes > 0:
        raise UserError(f"--minutes={opts.minutes}: must be above 0")
    # Absolute: the record's paths must hold for a --continue_from run from another folder.
    opts = dataclasses.replace(opts, workdir=os.path.abspath(opts.workdir))
    cores = parse_cores(opts.cores)
    exps = parse_experiments(opts.experiments)
    clips, plan = (_plan_continued if opts.continue_from else _plan_fresh)(opts, exps)
    files.check_output(opts.workdir, [c for c in clips.values() if c], flag="--workdir")
    for label, _ in plan:
        if os.path.exists(os.path.join(opts.workdir, "runs", label)):
            raise UserError(f"--workdir={opts.workdir}: runs/{label} exists (a run trained "
                            "on would not be of equal budget); give a new label or folder")
    os.makedirs(os.path.join(opts.workdir, "logs"), exist_ok=True)
    if not opts.continue_from:
        extract_both(clips["a"], clips["b"], opts.workdir, opts.extract_size)
    runs, jobs = {}, []
    for label, entry in plan:
        run = os.path.join(opts.workdir, "runs", label)
        if entry.get("continued_from"):  # a copy: the earlier run stays as its table shows it
            shutil.copytree(entry["continued_from"], run, symlinks=True)
        runs[label] = entry
        jobs.append((label, ["train", *entry["train_args"], f"--workdir={run}"]))
    errors = train_all(jobs, cores, opts.minutes, opts.workdir)
    done = [label for label in runs if errors[label] is None]
    evaluated = evaluate_all(done, cores, opts.workdir, clips, opts.max_frames)
    for label, run in runs.items():
        run["error"] = errors[label]
        for kind, value in evaluated.get(label, {}).items():
            run[kind] = headline(value) if isinstance(value, dict) else value
    record = {"minutes": opts.minutes, "cores": cores, "clips": clips,
              "extract_size": opts.extract_size, "max_frames": opts.max_frames,
              "continue_from": opts.continue_from,
              "runs": runs}
    files.write_json(os.path.join(opts.workdir, RECORD), record, default=float)
    files.atomic_write_bytes(os.path.join(opts.workdir, "quality.md"),
                             (table(record) + "\n").encode())
    failed = [f"{label}: {r['error'] or r['held_out']}" for label, r in runs.items()
              if not isinstance(r.get("held_out"), dict)]
    if failed:  # the table is written; the exit status says not every run made it
        print(table(record), flush=True)
        raise RunError(f"benchmark quality: {len(failed)} run(s) failed ({'; '.join(failed)}); "
                       f"logs in {os.path.join(opts.workdir, 'logs')}")
    return record
