"""Start-up validation of experiment configs (facejax/config_check.py): the common schema merged
with the family's (`Task.config_schema`)."""

import importlib

import ml_collections
import pytest

from facejax import augment, config_check, losses, tasks, train
from facejax.errors import UserError
from tests.tasks.fingerprints import VARIANTS


def _configs():
    """(name, config, its task's schema) of every variant of every experiment."""
    for experiment, variants in VARIANTS.items():
        for v in variants:
            config = importlib.import_module(f"facejax.experiments.{experiment}").get_config(v)
            yield f"{experiment}:{v}", config, tasks.get(config.task).config_schema


def _numeric(value) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                for v in values)


def test_every_experiment_passes_and_every_numeric_setting_has_a_rule():
    for name, config, family in _configs():
        config_check.check(config, family)
        schema = config_check.merged(family)
        for key, value in config_check._leaves(config):
            if _numeric(value):
                assert isinstance(schema.get(key), config_check.Range), f"{name}: {key}"
    assert config_check.COMMON["augment.placement"] == augment.PLACEMENTS
    for name in ("pix2pix", "cyclegan"):
        assert tasks.get(name).config_schema["loss.gan_mode"] == losses.GAN_MODES


def _out_of_range(kind, low, high, low_open):
    """Values each rule must refuse: below, above, a fraction for an integer, a string."""
    bad = [low if low_open else low - 1, "x", float("nan")]
    if high != config_check.INF:
        bad.append(high + 1)
    if kind == "int":
        bad.append(low + 0.5 if low_open else low + 1.5)
    return bad


def _with(config, key: str, value) -> ml_collections.ConfigDict:
    """A copy of `config` with `key` (dotted) set to `value`. Not type-safe, so a string can
    stand where a number was (from the command line ml_collections refuses those itself:
    tools/ print them on one line)."""
    c = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    parent, leaf = c, key
    while "." in leaf:
        head, leaf = leaf.split(".", 1)
        if head not in parent:
            parent[head] = {}
        parent = parent[head]
    parent[leaf] = value
    return c


def test_every_rule_refuses_values_outside_it_naming_the_flag():
    checked = 0
    for name, config, family in _configs():
        schema = config_check.merged(family)
        for key, value in list(config_check._leaves(config)):
            rule = schema.get(key)
            bads = (_out_of_range(*rule) if isinstance(rule, config_check.Range)
                    else ["nope"] if rule else [])
            for bad in bads:
                many = isinstance(value, (tuple, list))
                c = _with(config, key, type(value)([bad] * len(value)) if many else bad)
                with pytest.raises(UserError, match=rf"^--config\.{key}="):
                    config_check.check(c, family)
                checked += 1
    assert checked > 300


def test_each_family_checks_its_own_keys_and_not_the_others():
    """A family's schema adds keys to the common ones (redefining one is a bug in the family);
    a key only another family reads goes unchecked (ml_collections' locked configs refuse keys
    an experiment lacks anyway). A key two families read may allow different choices
    (data.mask: the autoencoder may train on the whole view, SAEHD may not); set to a choice
    both allow, it leaves the other family's key the one refused."""
    common = set(config_check.COMMON)
    for name in tasks.TASKS:
        assert tasks.get(name).config_schema and not common & set(tasks.get(name).config_schema)
    with pytest.raises(ValueError, match="redefines common keys: batch_size"):
        config_check.merged({"batch_size": config_check.integer(4)})
    configs = {config.task: config for _, config, _ in _configs()}
    for mine in tasks.TASKS:
        own = tasks.get(mine).config_schema
        for theirs in tasks.TASKS:
            other = tasks.get(theirs).config_schema
            for key in set(other) - set(own):
                rule = other[key]
                bad = _out_of_range(*rule)[0] if isinstance(rule, config_check.Range) else "?"
                config = _with(configs[mine], key, bad)
                for shared in set(own) & set(other):
                    if own[shared] != other[shared] and isinstance(own[shared], tuple):
                        config = _with(config, shared, next(
                            o for o in own[shared] if o in other[shared]))
                config_check.check(config, own)
                with pytest.raises(UserError, match=rf"^--config\.{key}="):
                    config_check.check(config, other)


def test_training_refuses_a_family_key_out_of_range_in_one_line(tmp_path):
    config = importlib.import_module("facejax.experiments.saehd").get_config("tiny")
    config.model.ae_dims = 0
    with pytest.raises(UserError) as e:
        train.train(config, str(tmp_path / "wd"))
    assert str(e.value) == "--config.model.ae_dims=0: must be an integer >= 1"
    assert not (tmp_path / "wd").exists()


def test_every_experiment_holds_every_key_the_loop_reads_and_a_config_without_one_is_refused(
        tmp_path):
    for name, config, _ in _configs():
        config_check.require(config)  # raises for a missing key
    config = importlib.import_module("facejax.experiments.deepfakes_original").get_config("tiny")
    for key in ("quality_every", "data.workers", "data.degrade.prob"):
        c = ml_collections.ConfigDict(config.to_dict())
        parent, leaf = c, key
        while "." in leaf:
            head, leaf = leaf.split(".", 1)
            parent = parent[head]
        del parent[leaf]
        with pytest.raises(UserError) as e:
            train.train(c, str(tmp_path / "wd"))
        assert str(e.value).startswith(f"--config: no {key} (") and "\n" not in str(e.value)
        assert not (tmp_path / "wd").exists()
