"""SAEHD's networks (facejax/models/saehd.py): the PyTorch reference's parameter counts per
module, and the shapes of every archi option."""

import jax
import jax.numpy as jnp
import pytest

from facejax.models import saehd

# ../shared/bench/torch_saehd.py --archi df|liae (128 px, ae 256, e 64, d 64, mask 22), its
# "params_by_module" (run 2026-12-01, torch 2.13.0).
REFERENCE = {
    "df": {"encoder": 4306560, "inter": 14959872, "decoder_a": 19136000, "decoder_b": 19136000},
    "liae": {"encoder": 4306560, "inter_ab": 26249472, "inter_b": 26249472,
             "decoder": 38157824},
}


def _params(archi, size=128, **kw):
    m = saehd.SAEHD(archi=archi, size=size, **kw)
    x = jnp.zeros((1, size, size, 3))
    return m, jax.eval_shape(lambda: m.init(jax.random.key(0), x,
                                            method=saehd.SAEHD.init_all))["params"]


@pytest.mark.parametrize("archi", ["df", "liae"])
def test_parameter_counts_equal_the_pytorch_reference(archi):
    _, p = _params(archi)
    got = {k: sum(x.size for x in jax.tree.leaves(t)) for k, t in p.items()}
    assert got == REFERENCE[archi]


@pytest.mark.parametrize("archi, size", [("df", 64), ("liae", 64), ("df-u", 64), ("df-d", 64),
                                         ("liae-ud", 64), ("df-t", 64), ("liae-udt", 128)])
def test_every_archi_option_gives_faces_and_masks_at_the_resolution(archi, size):
    m, p = _params(archi, size, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4)
    x = jnp.zeros((2, size, size, 3))
    for source, target in (("a", "a"), ("b", "a"), ("b", "b")):
        face, mask = jax.eval_shape(lambda p, x: m.apply({"params": p}, x, source, target), p, x)
        assert face.shape == (2, size, size, 3) and mask.shape == (2, size, size, 1)
    if "t" in archi:  # two residual blocks in the encoder, four upscales in the decoder
        assert "Residual_1" in p["encoder"]


def test_bad_archis_and_resolutions_are_refused():
    with pytest.raises(ValueError, match="archi 'dfx'"):
        saehd.parse_archi("dfx")
    with pytest.raises(ValueError, match="archi 'df-q'"):
        saehd.parse_archi("df-q")
    with pytest.raises(ValueError, match="multiple of 32"):
        saehd.check_resolution(80, "d")
    saehd.check_resolution(80, "")
