"""Start-up validation of experiment configs (facejax/config_check.py)."""

import importlib

import ml_collections
import pytest

from facejax import augment, config_check, losses
from facejax.errors import UserError
from tests.tasks.fingerprints import VARIANTS


def _configs():
    for experiment, variants in VARIANTS.items():
        for v in variants:
            yield f"{experiment}:{v}", importlib.import_module(
                f"facejax.experiments.{experiment}").get_config(v)


def test_every_experiment_passes_and_every_numeric_setting_has_a_rule():
    for name, config in _configs():
        config_check.check(config)
        for key, value in config_check._leaves(config):
            values = value if isinstance(value, (tuple, list)) else (value,)
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                              for v in values):
                assert config_check.rule_of(key, config_check.NUMBERS), f"{name}: {key}"
    assert config_check.CHOICES["loss.gan_mode"] == losses.GAN_MODES
    assert config_check.CHOICES["augment.placement"] == augment.PLACEMENTS


def _out_of_range(kind, low, high, low_open):
    """Values each rule must refuse: below, above, a fraction for an integer, a string."""
    bad = [low if low_open else low - 1, "x", float("nan")]
    if high != config_check.INF:
        bad.append(high + 1)
    if kind == "int":
        bad.append(low + 0.5 if low_open else low + 1.5)
    return bad


def test_every_rule_refuses_values_outside_it_naming_the_flag():
    checked = 0
    for name, config in _configs():
        for key, value in list(config_check._leaves(config)):
            rule = config_check.rule_of(key, config_check.NUMBERS)
            choices = config_check.rule_of(key, config_check.CHOICES)
            bads = _out_of_range(*rule) if rule else ["nope"] if choices else []
            for bad in bads:
                # Not type-safe, so a string can stand where a number was (from the command line
                # ml_collections refuses those itself: tools/ print them on one line).
                c = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
                parent, leaf = c, key
                while "." in leaf:
                    head, leaf = leaf.split(".", 1)
                    parent = parent[head]
                parent[leaf] = type(value)([bad] * len(value)) if isinstance(
                    value, (tuple, list)) else bad
                with pytest.raises(UserError, match=rf"^--config\.{key}="):
                    config_check.check(c)
                checked += 1
    assert checked > 300
