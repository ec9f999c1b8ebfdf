"""SAEHD's networks (facejax/models/saehd.py): the PyTorch reference's parameter counts per
module, and the shapes of every archi option."""

import jax
import numpy as np
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
    for target in ("a", "b"):
        face, mask = jax.eval_shape(lambda p, x: m.apply({"params": p}, x, target), p, x)
        assert face.shape == (2, size, size, 3) and mask.shape == (2, size, size, 1)
    if "t" in archi:  # two residual blocks in the encoder, four upscales in the decoder
        assert "Residual_1" in p["encoder"]


def test_liae_swaps_through_the_shared_code_as_deepfacelab():
    """liae has one decoder: a face rendered as A reads inter_AB twice (DeepFaceLab's src code,
    also for a face of B: its swap), as B inter_B and inter_AB (its reconstruction)."""
    m = saehd.SAEHD(archi="liae", size=64, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4)
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    p = m.init(jax.random.key(0), x, method=saehd.SAEHD.init_all)["params"]
    as_a, as_b = (m.apply({"params": p}, x, t)[0] for t in ("a", "b"))
    f = m.apply({"params": p}, x, method=saehd.SAEHD.encode)
    ab = m.apply({"params": p}, f, method=lambda mod, f: mod.inter_ab(f))
    src_code = jnp.concatenate([ab, ab], axis=-1)
    expect = m.apply({"params": p}, src_code, "a", method=saehd.SAEHD.decode)[0]
    np.testing.assert_allclose(as_a, expect, atol=1e-6)
    assert float(jnp.abs(as_a - as_b).mean()) > 1e-4


def test_bad_archis_and_resolutions_are_refused():
    with pytest.raises(ValueError, match="archi 'dfx'"):
        saehd.parse_archi("dfx")
    with pytest.raises(ValueError, match="archi 'df-q'"):
        saehd.parse_archi("df-q")
    with pytest.raises(ValueError, match="multiple of 32"):
        saehd.check_resolution(80, "d")
    saehd.check_resolution(80, "")


def test_patch_discriminator_layers_follow_the_receptive_field_rule():
    """3×3 layers, the first of stride 2, whose receptive field is nearest the patch size,
    fewest layers and then most downsampling first (worked by hand from DeepFaceLab's rule)."""
    from facejax.models import saehd_discriminators as d
    assert d.patch_layers(3) == [(3, 2)]                                  # field 3
    assert d.patch_layers(8) == [(3, 2), (3, 2)]                          # 3 + 2·2 = 7
    assert d.patch_layers(10) == [(3, 2), (3, 1), (3, 2)]                 # 3 + 4 + 4 = 11
    assert d.patch_layers(16) == [(3, 2), (3, 2), (3, 2)]                 # 3 + 4 + 8 = 15
    assert d.receptive_field([(3, 2), (3, 1), (3, 2), (3, 2)]) == 19
    assert d.downsampling(16) == 8


def test_discriminators_have_deepfacelabs_shapes_and_parameter_counts():
    """Counted by hand from DeepFaceLab's layer lists. U-Net at 128 px, base 16, patch 16
    (widths 16, 32, 64, 128): 1×1 in 64; convs 4,640 + 18,496 + 73,856; centre logit 129 and
    conv 16,512; transposed 73,792 + 36,896 + 9,232; 1×1 out 33. Code discriminator on df's
    16×16×256 code: 1 + 16/8 = 3 convs, 1,048,832 + 1,180,160 + 4,719,616, and 1,025."""
    from facejax.models import saehd_discriminators as d
    unet = d.UNetPatchDiscriminator(patch_size=16, base=16)
    x = jnp.zeros((2, 128, 128, 3))
    p = jax.eval_shape(lambda: unet.init(jax.random.key(0), x))["params"]
    assert sum(v.size for v in jax.tree.leaves(p)) == 233_650
    centre, pixels = jax.eval_shape(lambda p: unet.apply({"params": p}, x), p)
    assert centre.shape == (2, 16, 16, 1) and pixels.shape == (2, 128, 128, 1)
    code_d = d.CodeDiscriminator(256)
    code = jnp.zeros((2, 16, 16, 256))
    p = jax.eval_shape(lambda: code_d.init(jax.random.key(0), code))["params"]
    assert sum(v.size for v in jax.tree.leaves(p)) == 6_949_633
    assert jax.eval_shape(lambda p: code_d.apply({"params": p}, code), p).shape == (2, 2, 2, 1)
    with pytest.raises(ValueError, match="gan_patch_size"):
        jax.eval_shape(lambda: d.UNetPatchDiscriminator(64).init(
            jax.random.key(0), jnp.zeros((1, 48, 48, 3))))
