"""Checkpoints of the training state (facejax/checkpoint.py): round trips of a sharded state,
pruning, partial restores, the shape check against orbax's metadata, read-only use, and the
failures a kill or a full disk leaves behind."""

import os
import resource
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from facejax import checkpoint, parallel, trees
from facejax.errors import UserError


def _state(step: int = 3, width: int = 8):
    """A training state as the tasks build it: params, an optax state (named tuples), a step."""
    params = {"dense": {"w": jnp.arange(4.0 * width).reshape(4, width) / 7,
                        "b": jnp.linspace(-1.0, 1.0, width)}}
    opt = optax.adam(1e-3).init(params)
    return {"params": params, "opt": opt, "step": jnp.array(step)}


def _sharded(state, mesh):
    """`state` with "w" split over the mesh's devices, the rest replicated."""
    rep, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jax.device_put(x, split if path[-1] == jax.tree_util.DictKey("w")
                                       else rep), state)


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)


def _assert_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_a_sharded_state_round_trips_in_value_and_sharding(tmp_path):
    mesh = parallel.make_mesh()
    assert mesh.size >= 2  # conftest's simulated devices: "w" really is split
    state = _sharded(_state(), mesh)
    ck = checkpoint.Checkpointer(str(tmp_path))
    ck.save(3, state)
    back = ck.restore(_abstract(state))
    _assert_equal(back, state)
    assert back["params"]["dense"]["w"].sharding == parallel.batch_sharding(mesh)
    assert back["step"].sharding == parallel.replicated(mesh)
    ck.close()
    # Read back on one device, whatever layout saved it (what inference does).
    local = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    on_one = local.restore_local(jax.eval_shape(lambda: state))
    _assert_equal(on_one, state)
    assert all(x.sharding.device_set == {jax.local_devices()[0]} for x in jax.tree.leaves(on_one))
    local.close()


def test_keep_prunes_to_the_latest_steps_and_a_step_can_be_chosen(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), keep=2)
    assert ck.latest_step() is None and not checkpoint.has_checkpoints(str(tmp_path))
    for step in (1, 2, 3, 4):
        ck.save(step, _state(step))
    assert ck.all_steps() == [3, 4] and ck.latest_step() == 4
    assert sorted(p for p in os.listdir(tmp_path / "checkpoints")) == ["3", "4"]
    assert checkpoint.has_checkpoints(str(tmp_path))
    abstract = jax.eval_shape(_state)
    assert int(ck.restore_local(abstract)["step"]) == 4
    assert int(ck.restore_local(abstract, step=3)["step"]) == 3
    ck.close()


def test_a_non_finite_state_is_refused_and_nothing_is_written(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path))
    state = _state()
    state["params"]["dense"]["b"] = state["params"]["dense"]["b"].at[2].set(jnp.nan)
    with pytest.raises(checkpoint.NonFiniteState, match="step 5 is not finite"):
        ck.save(5, state)
    assert ck.all_steps() == [] and not checkpoint.has_checkpoints(str(tmp_path))
    ck.close()


def test_partial_restore_returns_the_parts_both_hold(tmp_path):
    """A discriminator switched off since the save: its part is read and left out; switched on,
    the part the checkpoint lacks is refused by name (the caller initialises it instead)."""
    g = _state()
    saved = {"g": g["params"], "d": {"w": jnp.ones((2, 3))}, "step": g["step"]}
    ck = checkpoint.Checkpointer(str(tmp_path))
    ck.save(3, saved)
    assert ck.saved_parts() == ["d", "g", "step"] == ck.saved_parts(3)
    without_d = jax.eval_shape(lambda: {"g": saved["g"], "step": saved["step"]})
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    back = ck.restore(trees.abstract_of(without_d, one_device), partial=True)
    assert sorted(back) == ["g", "step"]
    _assert_equal(back, {"g": saved["g"], "step": saved["step"]})
    # Without `partial`, a part the model lacks is another model.
    with pytest.raises(UserError, match=r"does not fit this model: d/w is \[2, 3\] in the "
                                        r"checkpoint, absent in the config"):
        ck.restore_local(without_d)
    ck.close()


@pytest.mark.parametrize("change, message", [
    (lambda s: dict(s, params={"dense": dict(s["params"]["dense"],
                                             w=jnp.zeros((4, 9)))}),
     r"params/dense/w is \[4, 8\] in the checkpoint, \[4, 9\] in the config"),
    (lambda s: dict(s, params={"dense": dict(s["params"]["dense"], extra=jnp.zeros(2))}),
     r"params/dense/extra is absent in the checkpoint, \[2\] in the config"),
], ids=["other_shape", "other_structure"])
def test_a_checkpoint_of_another_model_is_one_line_naming_the_leaf(tmp_path, change, message):
    """Checked against orbax's metadata before any array is read."""
    ck = checkpoint.Checkpointer(str(tmp_path))
    ck.save(3, _state())
    ck.close()
    ck = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    with pytest.raises(UserError, match=message) as error:
        ck.restore_local(jax.eval_shape(lambda: change(_state())))
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"{tmp_path / 'checkpoints'}/3: does not fit this model")
    ck.close()


def test_read_only_use_creates_nothing_and_says_when_there_is_nothing(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path / "run"), read_only=True)
    assert ck.latest_step() is None and ck.all_steps() == []
    with pytest.raises(UserError, match="no checkpoint to restore$"):
        ck.restore_local(jax.eval_shape(_state))
    ck.close()
    assert not (tmp_path / "run").exists()
    # A workdir that is a file: one line naming the folder.
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="file/checkpoints: cannot use as a checkpoint folder"):
        checkpoint.Checkpointer(str(tmp_path / "file"))


def _small_state():
    return {"w": jnp.arange(300_000, dtype=jnp.float32), "step": jnp.array(1)}


def test_a_partly_written_checkpoint_is_never_picked_up(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path))
    state = _small_state()
    ck.save(2, state)
    ck.close()
    # What a kill in the middle of saving step 4 leaves: orbax's temporary folder.
    partial = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1234"
    (partial / "default").mkdir(parents=True)
    (partial / "default" / "junk").write_bytes(b"\0" * 100)
    ck = checkpoint.Checkpointer(str(tmp_path))
    assert ck.latest_step() == 2 and ck.all_steps() == [2]
    restored = ck.restore(jax.eval_shape(lambda: state))
    np.testing.assert_array_equal(restored["w"], state["w"])
    ck.save(4, state)  # the leftover does not block the next save of that step
    assert ck.latest_step() == 4
    ck.close()


def test_a_failed_save_says_so_and_keeps_the_previous_checkpoints(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes every write past 64 kB
    fail with EFBIG, as a full disk does."""
    ck = checkpoint.Checkpointer(str(tmp_path))
    state = _small_state()
    ck.save(1, state)
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(checkpoint.SaveFailed, match=r"step 2 failed .*earlier checkpoints "
                                                         r"\[1\] are kept"):
            ck.save(2, dict(state, step=jnp.array(2)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    ck.close()
    ck = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    assert ck.all_steps() == [1]
    np.testing.assert_array_equal(ck.restore(jax.eval_shape(lambda: state))["w"], state["w"])
    ck.close()
    assert [p for p in sorted(os.listdir(tmp_path / "checkpoints"))
            if "tmp" not in p] == before


def _largest_file(folder) -> str:
    """The largest file under `folder` (a checkpoint's biggest array chunk)."""
    files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
    return max(files, key=os.path.getsize)


def damage(folder, how: str) -> str:
    """Damages the largest file under `folder` as a disk or a copy can: one byte flipped in
    its middle, cut to half its length, or removed. Returns its path."""
    path = _largest_file(folder)
    data = bytearray(open(path, "rb").read())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(data)
    elif how == "truncate":
        open(path, "wb").write(data[:len(data) // 2])
    else:
        assert how == "remove"
        os.remove(path)
    return path


@pytest.mark.parametrize("how, reason", [
    ("flip", "w reads back other bytes than were saved"),
    ("truncate", "an array cannot be read: OUT_OF_RANGE"),
    ("remove", "an array cannot be read"),
])
def test_a_damaged_checkpoint_is_named_and_the_one_before_still_restores(tmp_path, how, reason):
    ck = checkpoint.Checkpointer(str(tmp_path))
    for step in (2, 4):
        ck.save(step, dict(_small_state(), w=_small_state()["w"] * step, step=jnp.array(step)))
    ck.close()
    assert os.path.isfile(tmp_path / "checkpoints" / "4" / checkpoint.CHECKSUMS)
    damage(tmp_path / "checkpoints" / "4", how)
    ck = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    abstract = jax.eval_shape(_small_state)
    with pytest.raises(checkpoint.DamagedCheckpoint) as error:
        ck.restore(abstract)
    assert str(error.value).startswith(f"{tmp_path / 'checkpoints' / '4'}: the checkpoint of "
                                       f"step 4 is damaged ({reason}")
    assert error.value.step == 4 and "\n" not in str(error.value)
    back = ck.restore(abstract, step=2)
    np.testing.assert_array_equal(back["w"], _small_state()["w"] * 2)
    with pytest.raises(UserError, match=r"no checkpoint of step 3 \(there are 2, 4\)"):
        ck.restore(abstract, step=3)
    ck.close()


def test_a_checkpoint_without_checksums_restores_unverified(tmp_path):
    """What checkpoints written before checksums existed look like."""
    ck = checkpoint.Checkpointer(str(tmp_path))
    ck.save(2, _small_state())
    ck.close()
    os.remove(tmp_path / "checkpoints" / "2" / checkpoint.CHECKSUMS)
    ck = checkpoint.Checkpointer(str(tmp_path), read_only=True)
    np.testing.assert_array_equal(ck.restore(jax.eval_shape(_small_state))["w"],
                                  _small_state()["w"])
    ck.close()


def test_a_damaged_step_moved_aside_is_kept_and_blocks_neither_pruning_nor_its_next_save(
        tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), keep=2)
    ck.save(2, _small_state())
    ck.save(4, _small_state())
    damaged_file = damage(tmp_path / "checkpoints" / "4", "flip")
    damaged_bytes = open(damaged_file, "rb").read()
    kept = ck.move_aside(4)
    assert kept == tmp_path / "damaged_checkpoints" / "4" and ck.all_steps() == [2]
    for step in (4, 6, 8):  # step 4 again, then orbax prunes to the latest 2
        ck.save(step, dict(_small_state(), step=jnp.array(step)))
    assert ck.all_steps() == [6, 8]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6", "8"]
    rel = os.path.relpath(damaged_file, tmp_path / "checkpoints" / "4")
    assert open(kept / rel, "rb").read() == damaged_bytes  # untouched, where the line says
    # A second damaged step 8 goes beside the first damaged one of that step.
    ck.move_aside(8)
    ck.save(8, _small_state())
    assert ck.move_aside(8) == tmp_path / "damaged_checkpoints" / "8.1"
    assert sorted(os.listdir(tmp_path / "damaged_checkpoints")) == ["4", "8", "8.1"]
    assert ck.all_steps() == [6]
    ck.close()
