"""The pix2pix U-Net and the PatchGAN: shapes per size, the receptive field."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facejax.models import patchgan, unet


@pytest.mark.parametrize("size, down, logits", [(64, 6, 6), (128, 7, 14), (256, 8, 30)])
def test_unet_and_patchgan_shapes(size, down, logits):
    g = unet.UNet(size=size)
    x = jnp.zeros((1, size, size, 3))
    v = jax.eval_shape(lambda: g.init({"params": jax.random.key(0)}, x, train=False))
    chex.assert_shape(jax.eval_shape(lambda v: g.apply(v, x, train=False), v), (1, size, size, 3))
    assert len(unet.down_widths(size)) == down
    assert unet.down_widths(256) == [64, 128, 256, 512, 512, 512, 512, 512]
    d = patchgan.PatchGAN()
    xd = jnp.zeros((1, size, size, 6))
    vd = jax.eval_shape(lambda: d.init(jax.random.key(0), xd, train=False))
    out = jax.eval_shape(lambda v: d.apply(v, xd, train=False), vd)
    chex.assert_shape(out, (1, logits, logits, 1))


def test_patchgan_receptive_field_is_70():
    assert patchgan.receptive_field(3) == 70
    # Measured: the input pixels that move one output logit, by the gradient.
    d = patchgan.PatchGAN(base=4, max_width=8, norm="none")
    x = jax.random.normal(jax.random.key(0), (1, 128, 128, 3))
    v = d.init(jax.random.key(1), x, train=False)
    grad = jax.grad(lambda x: d.apply(v, x, train=False)[0, 7, 7, 0])(x)
    rows = np.nonzero(np.abs(np.asarray(grad[0])).sum((1, 2)))[0]
    cols = np.nonzero(np.abs(np.asarray(grad[0])).sum((0, 2)))[0]
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
