"""Pixel shuffle (facejax/ops/shuffle.py): depth to space, and space to depth its inverse."""

import jax.numpy as jnp
import numpy as np

from facejax.ops.shuffle import pixel_shuffle, space_to_depth


def test_pixel_shuffle_is_depth_to_space_and_inverts():
    x = jnp.arange(2 * 3 * 3 * 8, dtype=jnp.float32).reshape(2, 3, 3, 8)
    y = pixel_shuffle(x)
    assert y.shape == (2, 6, 6, 2)
    # Output pixel (2i+dy, 2j+dx, c) takes input channel (dy·2 + dx)·C + c.
    assert y[0, 1, 0, 1] == x[0, 0, 0, 2 * 2 + 1]
    np.testing.assert_array_equal(space_to_depth(y), x)
