"""The deepfakes autoencoder's encoder and decoder: shapes and parameter counts."""

import chex
import jax
import jax.numpy as jnp

from facejax.experiments import deepfakes_original
from facejax.models import autoencoder
from facejax.tasks import autoencoder as ae_task


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_autoencoder_shapes_and_parameter_count():
    config = deepfakes_original.get_config()
    state = jax.eval_shape(lambda k: ae_task.init(k, config), jax.random.key(0))
    p = state["params"]
    conv = lambda k, i, o: k * k * i * o + o
    dense = lambda i, o: i * o + o
    enc = (conv(5, 3, 128) + conv(5, 128, 256) + conv(5, 256, 512) + conv(5, 512, 1024)
           + dense(4 * 4 * 1024, 1024) + dense(1024, 4 * 4 * 1024) + conv(3, 1024, 4 * 512))
    dec = conv(3, 512, 4 * 256) + conv(3, 256, 4 * 128) + conv(3, 128, 4 * 64) + conv(5, 64, 3)
    print(f"64 px autoencoder: encoder {count(p['encoder']):,}, decoder {count(p['decoder_a']):,}, "
          f"total {count(p):,} parameters")
    assert count(p["encoder"]) == enc and count(p["decoder_a"]) == count(p["decoder_b"]) == dec
    enc_m, dec_m = autoencoder.build(config)
    x = jnp.zeros((2, 64, 64, 3))
    code = jax.eval_shape(lambda p, x: enc_m.apply({"params": p}, x), p["encoder"], x)
    chex.assert_shape(code, (2, 8, 8, 512))
    out = jax.eval_shape(lambda p, c: dec_m.apply({"params": p}, c), p["decoder_a"], code)
    chex.assert_shape(out, (2, 64, 64, 3))


def test_128px_needs_no_new_code():
    config = deepfakes_original.get_config("128")
    state = jax.eval_shape(lambda k: ae_task.init(k, config), jax.random.key(0))
    out = jax.eval_shape(
        lambda p, x: ae_task.forward(p, x, "decoder_b", config), state["params"],
        jnp.zeros((1, 128, 128, 3)))
    chex.assert_shape(out, (1, 128, 128, 3))
