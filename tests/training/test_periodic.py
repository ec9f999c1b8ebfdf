"""The training loop's periodic work (facejax/training/periodic.py): one cadence rule, the
actions run in order after a step, the log line's rate; and the workdir's metrics history."""

import json

import pytest

from facejax.training import periodic, run_files


@pytest.mark.parametrize("step, every, last, expected", [
    (10, 5, 100, True), (11, 5, 100, False), (100, 7, 100, True),  # the last step, always
    (3, 0, 3, False),  # 0: never, not even at the last step
    (1, 1, 9, True)])
def test_due_every_n_steps_and_at_the_last(step, every, last, expected):
    assert periodic.due(step, every, last) is expected


class _Recorder:
    def __init__(self, name, every, calls):
        self.name, self.every, self.calls = name, every, calls

    def __call__(self, step, state, metrics):
        self.calls.append((self.name, step, dict(metrics)))
        metrics[self.name] = step


def test_actions_run_in_order_and_see_what_earlier_ones_added():
    calls = []
    actions = [_Recorder("log", 2, calls), _Recorder("evaluate", 3, calls),
               _Recorder("checkpoint", 4, calls)]
    for step in range(1, 8):
        periodic.run_due(actions, step, 7, state=None, metrics={"loss": 1.0})
    assert [(n, s) for n, s, _ in calls] == [
        ("log", 2), ("evaluate", 3), ("log", 4), ("checkpoint", 4), ("log", 6),
        ("evaluate", 6), ("log", 7), ("evaluate", 7), ("checkpoint", 7)]  # 7: the last step
    assert calls[-1][2] == {"loss": 1.0, "log": 7, "evaluate": 7}


class _AtStop(_Recorder):
    def at_stop(self, step, state, metrics):
        self.calls.append((f"{self.name} at stop", step, dict(metrics)))


def test_a_stop_runs_the_stop_actions_not_already_run_at_its_step():
    calls = []
    actions = [_Recorder("log", 1, calls), _AtStop("evaluate", 5, calls),
               _AtStop("preview", 4, calls), _AtStop("off", 0, calls)]
    periodic.run_at_stop(actions, 8, 10, state=None, metrics={})  # preview ran after step 8
    periodic.run_at_stop(actions, 7, 10, state=None, metrics={})
    assert [(n, s) for n, s, _ in calls] == [
        ("evaluate at stop", 8), ("evaluate at stop", 7), ("preview at stop", 7)]


def test_evaluate_at_a_stop_uses_one_batch_and_says_so_in_the_history(tmp_path):
    seen = []

    def batches(i):
        seen.append(i)
        return i

    action = periodic.Evaluate(100, lambda state, batch: {"val_l1": 0.5}, batches,
                               lambda b: b, 8, _Scalars(), str(tmp_path))
    metrics = {}
    action.at_stop(7, None, metrics)
    assert seen == [0] and metrics == {"val_l1": 0.5}
    assert run_files.read_history(str(tmp_path)) == [
        {"step": 7, "val_l1": 0.5, "stopped": 1.0, "eval_batches": 1.0}]


class _Scalars:
    def __init__(self):
        self.written = []

    def scalars(self, step, values):
        self.written.append((step, dict(values)))


def test_the_log_line_rates_the_steps_since_the_last_line(capsys, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(periodic.time, "monotonic", lambda: now[0])
    writer = _Scalars()
    log = periodic.Log(10, writer, num_steps=40, images_per_step=16)
    log.begin(20)                            # t = 100 at step 20
    now[0] = 101.0
    log.first_step_done(21)                  # the first step is left out of the rate
    now[0] = 103.0
    metrics = {"loss": 0.5}
    log(30, None, metrics)                   # 9 steps in 2 s
    assert metrics["steps_per_s"] == pytest.approx(4.5)
    assert metrics["images_per_s"] == pytest.approx(72.0)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "first step took 1.0 s"
    assert out[1].startswith("step 30/40 images_per_s 72 loss 0.5 steps_per_s 4.5 ETA")
    assert writer.written == [(30, metrics)]


def test_the_history_skips_a_line_cut_by_a_kill(tmp_path):
    run_files.record(str(tmp_path), 10, {"l1": 0.5})
    run_files.record(str(tmp_path), 20, {"l1": 0.25})
    with open(tmp_path / run_files.HISTORY, "a") as f:
        f.write(json.dumps({"step": 30, "l1": 0.1})[:9])
    assert run_files.read_history(str(tmp_path)) == [{"step": 10, "l1": 0.5},
                                                     {"step": 20, "l1": 0.25}]
