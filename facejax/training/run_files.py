"""The files a training run keeps in its workdir beside its checkpoints: config.json (what the
run trains; a resumed run or `--config.init_from` must train the same model), rollback.json
(the rollbacks after non-finite steps and the learning-rate scale they left) and metrics.jsonl
(the held-out metrics, a readable history)."""

from __future__ import annotations

import json
import os

import jax

from facejax import checkpoint as ckpt_lib
from facejax import files, runs, trees
from facejax.errors import UserError

# Config entries that define the model and its checkpoint layout: a workdir cannot be resumed,
# nor a model initialised from another run, when these differ.
MODEL_KEYS = ("task", "model")
HISTORY = "metrics.jsonl"


def check_writable(workdir: str) -> None:
    """Raises UserError when `workdir` cannot be created or written."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"--workdir {workdir}: not writable ({e.strerror})")


def _model_part(config_dict: dict) -> dict:
    return {k: config_dict.get(k) for k in MODEL_KEYS}


def check_same_model(config, workdir: str, what: str) -> None:
    """Raises UserError when `workdir` holds a run of another model than `config`'s."""
    path = os.path.join(workdir, runs.CONFIG_FILE)
    if not os.path.exists(path):
        return
    try:
        theirs = files.read_json(path, "the run's config")
        if not isinstance(theirs, dict):
            raise UserError(f"{path}: not a facejax run config")
    except UserError as e:
        raise UserError(f"{e}; the checkpoints beside it are intact: delete {path} and rerun the "
                        "run's own command (it writes the file again from --config; a "
                        "checkpoint of another model is refused on restore)")
    theirs = _model_part(theirs)
    if theirs != _model_part(json.loads(config.to_json_best_effort())):
        raise UserError(f"{what}: holds a run of another model ({json.dumps(theirs)[:200]})")


def save_or_check_config(config, workdir: str) -> None:
    """Writes workdir/config.json, or checks a resumed run trains the same model."""
    path = os.path.join(workdir, runs.CONFIG_FILE)
    mine = json.loads(config.to_json_best_effort())
    check_same_model(config, workdir, f"--workdir {workdir}")
    if jax.process_index() == 0:
        files.write_json(path, mine)


def init_from_config(config, workdir: str):
    """The config of the run `--config.init_from` names, checked to train the same model, when
    this run starts fresh from it (None otherwise: no init_from, or resuming).

    Raises:
      UserError: no run there, or one of another model.
    """
    if not config.init_from or ckpt_lib.has_checkpoints(workdir):
        return None
    flag = f"--config.init_from={config.init_from}"
    check_same_model(config, config.init_from, flag)
    return runs.load_config(config.init_from, flag=flag)


def weights_from(source: str, source_config, task, state, sharding):
    """`state` with the weights of the run in `source` (`--config.init_from`, trained with
    `source_config`): the same model, any optimizer or pool settings; its latest checkpoint,
    restored on `sharding`.

    Raises:
      UserError: no checkpoint there, or weights that do not fit.
    """
    flag = f"--config.init_from={source}"
    weights = task.params_of(runs.restore_state(source, source_config, task, sharding,
                                                flag=flag))
    wanted = task.params_of(state)
    if trees.shapes_of(weights) != trees.shapes_of(wanted):
        raise UserError(f"{flag}: its weights do not fit this model")
    return task.with_params(state, weights)


class RollbackState:
    """How often a run rolled back after a non-finite step, and the learning-rate scale that
    followed; kept in workdir/rollback.json so a resumed run keeps the reduced rate."""

    FILE = "rollback.json"

    def __init__(self, count: int = 0, lr_scale: float = 1.0, events=()):
        self.count, self.lr_scale, self.events = count, lr_scale, list(events)

    @classmethod
    def load(cls, workdir: str) -> "RollbackState":
        path = os.path.join(workdir, cls.FILE)
        if not os.path.exists(path):
            return cls()
        try:
            with open(path) as f:
                d = json.load(f)
            return cls(int(d["count"]), float(d["lr_scale"]), d.get("events", []))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: unreadable ({e}); delete it to train at the configured "
                            "learning rate")

    def record(self, workdir: str, bad_step: int, to_step: int, factor: float) -> None:
        self.count += 1
        self.lr_scale *= factor
        self.events.append({"non_finite_at": bad_step, "rolled_back_to": to_step,
                            "lr_scale": self.lr_scale})
        if jax.process_index() == 0:
            files.write_json(os.path.join(workdir, self.FILE),
                             {"count": self.count, "lr_scale": self.lr_scale,
                              "events": self.events})


def record(workdir: str, step: int, values: dict) -> None:
    """Appends held-out metrics to workdir/metrics.jsonl (process 0), a readable history."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, HISTORY), "a") as f:
            f.write(json.dumps(dict(step=step, **{k: float(v) for k, v in values.items()})) + "\n")


def read_history(workdir: str) -> list[dict]:
    """The held-out metrics recorded so far (a line cut by a kill is skipped)."""
    out = []
    path = os.path.join(workdir, HISTORY)
    if os.path.exists(path):
        for line in open(path):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
