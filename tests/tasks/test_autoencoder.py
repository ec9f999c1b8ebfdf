"""The autoencoder task: the shared encoder's one pass over both faces."""

import jax
import jax.numpy as jnp
import numpy as np

from facejax.experiments import deepfakes_original
from facejax.models import autoencoder
from facejax.tasks import autoencoder as ae_task


def test_one_encoder_pass_over_both_faces_equals_two(grid_faces):
    """The training step runs the shared encoder once over A's and B's faces (interleaved, so a
    sharded batch stays on its devices): the codes and their gradients are those of one pass
    per identity, on real faces."""
    from facejax.data import pipeline
    config = deepfakes_original.get_config("tiny")
    tables = {n: pipeline.FaceSource([grid_faces[n]], "train", config.data.load_size)
              for n in ae_task.IDENTITIES}
    batch = jax.tree.map(jnp.asarray, pipeline.FaceBatches(tables, global_batch=3, seed=0,
                                                           fields=ae_task.FIELDS)(0))
    a, b = (ae_task.views(batch, n, config) for n in ae_task.IDENTITIES)
    assert float(jnp.abs(a - b).mean()) > 0.05  # two different people
    enc, _ = autoencoder.build(config)
    params = {"encoder": jax.jit(enc.init)(jax.random.key(0), a)["params"]}
    weights = [jax.random.normal(jax.random.key(i), (3, 4, 4, 64)) for i in (1, 2)]

    def pair(p):
        ca, cb = ae_task.encode_pair(p, a, b, config)
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    def apart(p):
        ca, cb = (enc.apply({"params": p["encoder"]}, x) for x in (a, b))
        return (ca * weights[0]).sum() + (cb * weights[1]).sum(), (ca, cb)

    (_, codes), g = jax.jit(jax.value_and_grad(pair, has_aux=True))(params)
    (_, codes_ref), g_ref = jax.jit(jax.value_and_grad(apart, has_aux=True))(params)
    for x, y in zip([*codes, *jax.tree.leaves(g)], [*codes_ref, *jax.tree.leaves(g_ref)]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * float(jnp.abs(y).max()))
