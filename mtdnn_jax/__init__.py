"""mtdnn-jax: Multi-Task Deep Neural Networks for NLU in JAX/Flax."""

__version__ = "0.1.0"
