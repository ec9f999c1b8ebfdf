"""Dependencies point down (docs/architecture.md): each module imports only modules of its own
level or below, the jobs (train, convert, reenact, evaluate) none of each other, and the
classical computer vision knows no JAX. Checked on the source, without importing it."""

import ast
import os

from tests.helpers import ROOT

# The levels of docs/architecture.md's module map; the longest matching prefix wins.
LEVELS = {
    "facejax.errors": 0, "facejax.files": 0, "facejax.progress": 0, "facejax.lock": 0,
    "facejax.config_check": 0, "facejax.samples": 0,
    "facejax.faces": 1, "facejax.metrics": 1, "facejax.report": 1, "facejax.xla_setup": 1,
    "facejax.supervise": 1, "facejax.cli": 1, "facejax.trees": 1, "facejax.ops": 1,
    "facejax.losses": 1, "facejax.augment": 1, "facejax.parallel": 1, "facejax.jaxpr_onnx": 1,
    "facejax.checkpoint": 2, "facejax.summaries": 2, "facejax.quality": 2, "facejax.data": 2,
    "facejax.models": 2, "facejax.experiments": 2,
    "facejax.tasks": 3, "facejax.run_info": 3,
    "facejax.inference": 4,
    "facejax.train": 5, "facejax.convert": 5, "facejax.reenact": 5, "facejax.evaluate": 5,
    "facejax.export": 5, "facejax.commands": 6, "facejax.__main__": 6,
}
JOBS = 5
NO_JAX = ("facejax.errors", "facejax.files", "facejax.progress", "facejax.faces",
          "facejax.metrics", "facejax.report", "facejax.data.extract", "facejax.xla_setup")
JAX_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax", "chex")


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
