"""facejax: face swapping and reenactment training in JAX."""

__version__ = "0.1.0"
