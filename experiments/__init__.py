"""The experiments: one file per model family, each with `get_config(variant)`.

Named on the command line as `--config=NAME[:VARIANT]` from any folder (facejax.cli finds them
in this package); imported as `facejax.experiments.NAME` (`pip install .` ships this folder as
that package; a checkout registers it under the same name in facejax/__init__.py).
"""
