"""The per-family XLA:CPU settings (facejax/xla_setup.py) and that the tools apply them."""

import json
import os
import subprocess
import sys

from experiments import cyclegan_faces, deepfakes_original, face2face_pix2pix
from facejax import xla_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cyclegan_takes_eigen_convolutions_and_a_users_setting_wins(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    xla_setup.configure(deepfakes_original.get_config("tiny"))
    xla_setup.configure(face2face_pix2pix.get_config("tiny"))
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    xla_setup.configure(cyclegan_faces.get_config("tiny"))
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x " + xla_setup.EIGEN_CONVOLUTIONS
    xla_setup.configure(cyclegan_faces.get_config("tiny"))  # once only
    assert os.environ["XLA_FLAGS"].count("ynn_fusion_type") == 1
    mine = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    monkeypatch.setenv("XLA_FLAGS", mine)
    xla_setup.configure(cyclegan_faces.get_config("tiny"))
    assert os.environ["XLA_FLAGS"] == mine


def test_inference_tools_read_the_runs_family(monkeypatch, tmp_path):
    from facejax import inference
    assert xla_setup.RUN_CONFIG == inference.CONFIG_FILE
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_setup.configure_for_run(str(tmp_path))  # no config: nothing changes
    (tmp_path / "config.json").write_text("{not json")
    xla_setup.configure_for_run(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"task": "autoencoder"}))
    xla_setup.configure_for_run(str(tmp_path))
    assert os.environ["XLA_FLAGS"] == ""
    (tmp_path / "config.json").write_text(json.dumps({"task": "cyclegan"}))
    xla_setup.configure_for_run(str(tmp_path))
    assert os.environ["XLA_FLAGS"] == xla_setup.EIGEN_CONVOLUTIONS
    for tool in ("convert", "evaluate"):  # applied before the module that starts JAX loads
        src = open(os.path.join(ROOT, "tools", f"{tool}.py")).read()
        assert -1 < src.index("configure_for_run(FLAGS.model)") < src.index(
            f"from facejax import {tool}\n")


def test_the_flag_is_accepted_by_this_jaxlib():
    """XLA aborts on an unknown flag: a jaxlib upgrade that drops it fails here, not in a run."""
    code = ("import jax, jax.numpy as jnp; x = jnp.ones((1, 8, 8, 4)); k = jnp.ones((3, 3, 4, 2));"
            "print(float(jax.lax.conv(x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1),"
            " (1, 1), 'SAME').sum()))")
    env = dict(os.environ, XLA_FLAGS=xla_setup.EIGEN_CONVOLUTIONS, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Ones through a 3×3 'SAME' window: 2 outputs × 4 channels × (2 + 6·3 + 2)² taps in range.
    assert json.loads(out.stdout.strip().splitlines()[-1]) == 2 * 4 * 22 ** 2
