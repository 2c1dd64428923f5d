"""Packaging for mtdnn-jax.

Lower bounds are the versions the test suite was run against (see README, "Tested with").
Install PyTorch's CPU wheel *before* the `torch` or `dev` extras (`scripts/install.sh` does),
so pip never resolves a CUDA build.
"""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "ml-collections>=1.1.0",
    "chex>=0.1.92",
    "transformers>=5.23.0",  # tokenizers and configs only: transformers 5 has no Flax models
    "tokenizers>=0.23.3",
    "safetensors>=0.8.0",
    "numpy>=2.4.6",
    "tqdm>=4.70.1",
    "absl-py>=2.5.1",
    "pyyaml>=6.0.3",
    "matplotlib>=3.11.2",  # the loss / dev-metric plots every training run writes
    "tensorboardX>=2.6.5",  # TensorBoard event files without TensorFlow
    "seqeval>=1.2.2",  # CoNLL entity-level precision / recall / F1
]
TF = ["tensorflow-cpu>=2.21.0", "tensorflow-datasets>=4.9.10"]
TORCH = ["torch>=2.13.0"]
DEV = ["pytest>=9.0.3", "scipy>=1.17.1", "scikit-learn>=1.9.1"] + TF + TORCH

setup(
    name="mtdnn_jax",
    version="0.1.0",
    description="Multi-Task Deep Neural Networks for NLU (MT-DNN) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mtdnn_jax", "mtdnn_jax.*"]),
    install_requires=CORE,
    extras_require={"tf": TF, "torch": TORCH, "dev": DEV},
    license="MIT",
)
