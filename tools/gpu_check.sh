#!/usr/bin/env bash
# The checks that matter on an NVIDIA GPU (meant for about 10 minutes; not yet timed), after
#   python3 -m venv .venv && .venv/bin/pip install -r requirements-gpu.txt
# Prints one JSON line per benchmark (tools/benchmark.py train, every family's default variant,
# in bfloat16 and float32)
# after the GPU-relevant tests: bfloat16 against float32 for every family, no recompilation,
# and, on a machine with 2 or more GPUs, sharded steps equal to one device's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=2 JAX_PLATFORMS=cuda
"$PY" -c 'import jax; d = jax.devices(); assert d[0].platform == "gpu", d; print(f"devices: {d}")'
GPUS=$("$PY" -c 'import jax; print(len(jax.devices()))')
TESTS=(tests/tasks/test_common.py::test_bfloat16_compute_tracks_float32
       tests/test_train.py::test_no_recompilation_after_the_first_step)
if [ "$GPUS" -ge 2 ]; then
  TESTS+=(tests/test_train.py::test_sharded_step_equals_single_device_step
          tests/tasks/test_saehd.py::test_sharded_step_equals_single_device_step
          tests/tasks/test_cyclegan.py::test_sharded_step_equals_single_device_step)
else
  echo "one GPU: the sharded-step tests need 2 or more devices (they run on 8 simulated CPU devices in the suite)"
fi
# The GPU's own numbers, not the suite's CPU settings (8 simulated devices, XLA -O0).
JAX_NUM_CPU_DEVICES=1 XLA_FLAGS="--xla_backend_optimization_level=2" \
  "$PY" -m pytest -q -n 0 -p no:cacheprovider "${TESTS[@]}"
for config in deepfakes_original saehd face2face_pix2pix cyclegan_faces; do
  for dtype in auto float32; do  # auto: bfloat16 on a GPU
    "$PY" tools/benchmark.py train --config="$config" --steps=20 --warmup=3 \
      --config.model.compute_dtype="$dtype"
  done
done
