"""facejax: face swapping and reenactment training in JAX."""

import importlib.util as _importlib_util
import os as _os
import sys as _sys

__version__ = "0.1.0"


def _experiments_of_a_checkout() -> None:
    """Makes the checkout's top-level `experiments/` folder the `facejax.experiments` package.

    `pip install .` ships that folder as `facejax.experiments` (pyproject.toml maps it), so an
    installed facejax finds it as any subpackage; run from a checkout, the folder sits beside
    the package instead and is registered here under the same name."""
    package = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.isdir(_os.path.join(package, "experiments")):
        return  # installed: setuptools put it inside the package
    folder = _os.path.join(_os.path.dirname(package), "experiments")
    init = _os.path.join(folder, "__init__.py")
    if not _os.path.isfile(init):
        return
    spec = _importlib_util.spec_from_file_location(f"{__name__}.experiments", init,
                                                   submodule_search_locations=[folder])
    module = _importlib_util.module_from_spec(spec)
    _sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    globals()["experiments"] = module


_experiments_of_a_checkout()
