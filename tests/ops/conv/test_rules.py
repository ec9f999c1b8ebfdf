"""The choice rules (facejax/ops/conv/rules.py) as properties: every rule names a registered
form that computes its kernels, each kind ends in a rule that takes every shape, the first
matching rule wins, and a stride-1 Winograd tile never passes the layer's cap."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.ops import conv
from facejax.ops.conv import registry, rules


def _random_shapes(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rules.Shape(kernel=int(rng.choice([1, 2, 3, 4, 5, 7])),
                          in_channels=int(2 ** rng.integers(0, 12) + rng.integers(0, 3)),
                          out_channels=int(2 ** rng.integers(0, 12) + rng.integers(0, 3)),
                          pixels=int(rng.integers(1, 300) ** 2),
                          batch=int(2 ** rng.integers(0, 7)))


@pytest.mark.parametrize("kind", rules.KINDS)
def test_every_rule_names_a_registered_form_and_the_last_takes_every_shape(kind):
    assert set(rules.KINDS) == set(registry.FORMS)
    for rule in rules.RULES[kind]:
        assert rule.form in registry.names(kind), rule
        assert rule.why, rule
    last = rules.RULES[kind][-1]
    assert all(getattr(last, b) == (None, None) for b in rules.Rule.BOUNDS)


@pytest.mark.parametrize("kind", rules.KINDS)
def test_choice_is_the_first_matching_rule_and_a_form_that_fits(kind):
    for shape, tile in itertools.product(_random_shapes(), (2, 3, 4)):
        form = rules.choose(kind, shape, tile)
        first = next(r for r in rules.RULES[kind] if r.matches(shape))
        assert form == (rules.cap_tile(first.form, tile) if kind == "stride1" else first.form)
        assert form in registry.names(kind)
        if kind == "stride1":
            m = rules.winograd_tile(form)
            assert m is None or 2 <= m <= max(tile, 2)
            # The rules send only 3×3 and 4×4 kernels to Winograd tiles, which all fit.
            assert registry.supports(kind, form, shape.kernel)


def test_bounds_are_inclusive_and_open_where_none():
    rule = rules.Rule("xla", "test", in_channels=(64, None), pixels=(None, 256))
    base = dict(kernel=3, out_channels=1, batch=1)
    assert rule.matches(rules.Shape(in_channels=64, pixels=256, **base))
    assert rule.matches(rules.Shape(in_channels=10 ** 6, pixels=1, **base))
    assert not rule.matches(rules.Shape(in_channels=63, pixels=256, **base))
    assert not rule.matches(rules.Shape(in_channels=64, pixels=257, **base))
    shape = rules.Shape(kernel=5, in_channels=3, out_channels=7, pixels=100, batch=4)
    assert (shape.batch_pixels, shape.patch_entries) == (400, 400 * 25 * 3)


def test_resolve_explicit_auto_plain_and_unknown(monkeypatch):
    shape = rules.Shape(kernel=3, in_channels=256, out_channels=256, pixels=66 * 66, batch=1)
    assert conv.resolve("stride1", "auto", shape) == rules.choose("stride1", shape)
    assert conv.resolve("stride1", "auto", shape, max_tile=3) == "winograd3"
    assert conv.resolve("stride1", "im2col", shape) == "im2col"
    with conv.plain_forms():
        assert conv.resolve("stride1", "winograd4", shape) == "xla"
        assert conv.resolve("strided", "auto", shape) == "xla"
    assert conv.resolve("stride1", "auto", shape) != "xla"
    with pytest.raises(ValueError, match="unknown stride1 convolution impl 's2d'"):
        conv.resolve("stride1", "s2d", shape)
    from facejax.ops.conv import backend
    monkeypatch.setattr(backend.jax, "default_backend", lambda: "gpu")
    assert conv.resolve("stride1", "auto", shape) == "xla"  # other backends: XLA's own
    assert conv.resolve("stride1", "im2col", shape) == "im2col"


def _mesh_of(platform: str):
    device = jax.sharding.AbstractDevice(device_kind=f"a {platform}", num_cores=None,
                                         platform=platform)
    return jax.sharding.AbstractMesh((1,), ("data",), abstract_device=device)


def test_forms_follow_the_platform_of_the_mesh_traced_under(monkeypatch):
    """A step traced under a GPU's mesh takes XLA's own convolutions even where the default
    backend is the CPU (compiled ahead of time for the GPU: facejax benchmark gpu_compile), and
    one traced under a CPU mesh the CPU's forms whatever the default backend."""
    from facejax.ops.conv import backend
    shape = rules.Shape(kernel=3, in_channels=256, out_channels=256, pixels=66 * 66, batch=1)
    cpu_choice = rules.choose("stride1", shape)
    assert cpu_choice != "xla" and jax.default_backend() == "cpu"
    x, w = jnp.zeros((1, 16, 16, 64)), jnp.zeros((3, 3, 64, 64))
    unpadded = lambda x, w: conv.convolve("stride1", x, w, ((0, 0), (0, 0)), impl="xla")
    with jax.sharding.use_abstract_mesh(_mesh_of("gpu")):
        assert backend.target_platform() == "gpu"
        assert conv.resolve("stride1", "auto", shape) == "xla"
        assert conv.resolve("strided", "auto", shape) == "xla"
        assert "conv_valid" not in str(jax.make_jaxpr(lambda x, w: unpadded(x, w))(x, w))
    assert conv.resolve("stride1", "auto", shape) == cpu_choice  # no mesh: the backend's
    assert "conv_valid" in str(jax.make_jaxpr(lambda x, w: unpadded(x, w))(x, w))
    monkeypatch.setattr(backend.jax, "default_backend", lambda: "gpu")
    with jax.sharding.use_abstract_mesh(_mesh_of("cpu")):
        assert conv.resolve("stride1", "auto", shape) == cpu_choice
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    with jax.set_mesh(mesh):  # a concrete CPU mesh, as facejax.train traces its step under
        assert backend.target_platform() == "cpu"
        assert conv.resolve("stride1", "auto", shape) == cpu_choice


def test_transposed_form_follows_the_strided_one():
    assert conv.transposed_for(None, "s2d") == "subpixel"
    assert conv.transposed_for(None, "im2col") == "taps"
    assert conv.transposed_for(None, "auto") == "auto"
    assert conv.transposed_for("phases", "s2d") == "phases"
    for strided, transposed in rules.TRANSPOSED_FOR.items():
        assert strided in registry.names("strided")
        assert transposed in registry.names("transposed")
