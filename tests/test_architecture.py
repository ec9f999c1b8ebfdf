"""Dependencies point down (docs/architecture.md): each module imports only modules of its own
level or below, the jobs (train, convert, reenact, evaluate) none of each other, the classical
computer vision knows no JAX, the edges issue 30 removed stay removed, and what loads a trained
run reaches neither the training data's code nor TensorFlow. Checked on the source, without
importing it (tests/test_inference.py checks the last at run time too)."""

import ast
import os

from tests.helpers import ROOT

# The levels of docs/architecture.md's module map; the longest matching prefix wins.
LEVELS = {
    "facejax.errors": 0, "facejax.files": 0, "facejax.progress": 0, "facejax.lock": 0,
    "facejax.config_check": 0, "facejax.samples": 0,
    "facejax.faces": 1, "facejax.images": 1, "facejax.run_info": 1, "facejax.metrics": 1,
    "facejax.report": 1, "facejax.xla_setup": 1,
    "facejax.supervise": 1, "facejax.cli": 1, "facejax.trees": 1, "facejax.ops": 1,
    "facejax.losses": 1, "facejax.augment": 1, "facejax.warp_dfl": 1, "facejax.parallel": 1,
    "facejax.jaxpr_onnx": 1,
    "facejax.checkpoint": 2, "facejax.summaries": 2, "facejax.quality": 2, "facejax.data": 2,
    "facejax.models": 2, "facejax.experiments": 2,
    "facejax.tasks": 3, "facejax.runs": 3,
    "facejax.inference": 4, "facejax.training": 4,
    # Conversion's XSeg masks: a part of the convert job (and of its preview), over inference.
    "facejax.xseg_convert": 4.5,
    "facejax.train": 5, "facejax.convert": 5, "facejax.reenact": 5, "facejax.evaluate": 5,
    "facejax.export": 5, "facejax.segment": 5,
    # Above the convert job it views (one frame of it, re-rendered), below the command lines.
    "facejax.frame_preview": 5.5,
    "facejax.commands": 6, "facejax.__main__": 6, "facejax.studio": 6,
}
JOBS = 5
NO_JAX = ("facejax.errors", "facejax.files", "facejax.progress", "facejax.faces",
          "facejax.metrics", "facejax.report", "facejax.data.extract", "facejax.xla_setup",
          "facejax.images", "facejax.run_info")
JAX_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax", "chex")
# (importer, imported): no module named by the first prefix imports one named by the second.
FORBIDDEN = (
    ("facejax.run_info", "facejax.data"),         # a trained run's record needs no data code
    ("facejax.inference", "facejax.data"),
    ("facejax.runs", "facejax.data"),
    ("facejax.summaries", "facejax.faces"),       # PNGs and headers: facejax.images
    ("facejax.summaries", "facejax.report"),
    ("facejax.commands.evaluate", "facejax.data"),  # the held-out share is in the run record
    ("facejax.train", "facejax.inference"),       # both read a run through facejax.runs
    ("facejax.training", "facejax.inference"),
    ("facejax.tasks", "facejax.faces.masks"),     # part names: facejax.faces.parts
)
# Modules whose imports, followed through the package, must never reach these: loading a
# trained run (and the families' code) needs no training data, no TensorFlow, and the
# families no OpenCV or dlib.
UNREACHABLE = {
    "facejax.inference": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.convert": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.frame_preview": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.export": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.reenact": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.evaluate": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.segment": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.commands.evaluate": ("facejax.data", "tensorflow", "tensorflow_datasets"),
    "facejax.tasks": ("facejax.data", "tensorflow", "tensorflow_datasets", "cv2", "dlib"),
}


def _modules():
    """{module name: set of imported module names} of every module of the package."""
    out = {}
    # experiments/ is the package facejax.experiments (facejax/__init__.py, pyproject.toml).
    for top, package in (("facejax", "facejax"), ("experiments", "facejax.experiments")):
        out.update(_modules_of(os.path.join(ROOT, top), package))
    return out


def _modules_of(top: str, package: str) -> dict:
    out = {}
    for folder, _, files in os.walk(top):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = ".".join([package, *os.path.relpath(path, top)[:-3].split(os.sep)])
                name = name.removesuffix(".__init__")
                imports = set()
                for node in ast.walk(ast.parse(open(path).read())):
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        imports |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
                    elif isinstance(node, ast.Import):
                        imports |= {a.name for a in node.names}
                out[name] = imports
    return out


def _level(module: str):
    keys = [k for k in LEVELS if module == k or module.startswith(k + ".")]
    return (max(keys, key=len), LEVELS[max(keys, key=len)]) if keys else None


def test_every_module_has_a_level_and_imports_point_down():
    modules = _modules()
    assert len(modules) > 30
    upward = []
    for name, imports in modules.items():
        if name == "facejax":
            continue
        mine = _level(name)
        assert mine is not None, f"{name}: no level in LEVELS (and docs/architecture.md)"
        for target in imports:
            theirs = _level(target) if target in modules else None
            if theirs is None:
                continue
            if theirs[1] > mine[1] or (mine[1] == theirs[1] == JOBS and mine[0] != theirs[0]):
                upward.append(f"{name} (level {mine[1]}) imports {target} (level {theirs[1]})")
    assert not upward, "\n".join(upward)


def test_classical_computer_vision_knows_no_jax():
    for name, imports in _modules().items():
        if name.startswith(NO_JAX):
            jax_imports = {i for i in imports if i.split(".")[0] in JAX_PACKAGES}
            assert not jax_imports, f"{name} imports {sorted(jax_imports)}"


def _named(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_removed_edges_stay_removed():
    found = [f"{name} imports {target}"
             for name, imports in _modules().items() for target in imports
             for importer, imported in FORBIDDEN
             if _named(name, (importer,)) and _named(target, (imported,))]
    assert not found, "\n".join(found)


def _reachable(start: str, modules: dict) -> dict:
    """{module: the module that imports it} of everything `start`'s imports reach, inside the
    package followed further (with the packages whose __init__ each import runs)."""
    seen, todo = {start: None}, [start]
    while todo:
        name = todo.pop()
        for target in modules.get(name, ()):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                module = ".".join(parts[:i])
                if module not in seen and (module in modules or i == 1):
                    seen[module] = name
                    todo.append(module)
    return seen


def test_only_the_studio_imports_the_web_framework():
    web = ("starlette", "uvicorn")
    found = [f"{name} imports {target}" for name, imports in _modules().items()
             for target in imports if target.split(".")[0] in web
             and not _named(name, ("facejax.studio",))]
    assert not found, "\n".join(found)
    studio = [name for name, imports in _modules().items() if _named(name, ("facejax.studio",))
              and any(t.split(".")[0] in web for t in imports)]
    assert studio, "the check must see the studio's own imports of the framework"


def test_loading_a_trained_run_reaches_no_training_data_code():
    modules = _modules()
    for start_prefix, banned in UNREACHABLE.items():
        starts = [m for m in modules if _named(m, (start_prefix,))]
        assert starts, start_prefix
        for start in starts:
            reached = _reachable(start, modules)
            bad = [m for m in reached if _named(m, banned)]
            chains = []
            for m in bad:
                chain = [m]
                while reached[chain[-1]] is not None:
                    chain.append(reached[chain[-1]])
                chains.append(" <- ".join(chain))
            assert not bad, f"{start} reaches:\n" + "\n".join(chains)
