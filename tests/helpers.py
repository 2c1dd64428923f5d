"""Test utilities that stand apart from the code under test.

`hf_to_google_name` is written here from Google's and Hugging Face's own conventions (the
rules of transformers' historical `convert_tf_checkpoint_to_pytorch`), independently of
`mtdnn_jax.conversion.layout`, so that tests which build TF checkpoints with it check our
table instead of repeating it.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def hf_to_google_name(hf_key: str) -> tuple[str, bool]:
  """HF BertModel key → (Google TF variable name, whether the tensor is a transposed kernel)."""
  name = re.sub(r"^encoder\.layer\.(\d+)\.", r"encoder.layer_\1.", hf_key)
  parts = name.split(".")
  transpose = False
  if parts[-1] == "weight":
    if parts[-2] == "LayerNorm":
      parts[-1] = "gamma"
    elif parts[-2].endswith("_embeddings"):
      parts.pop()
    else:
      parts[-1] = "kernel"
      transpose = True
  elif parts[-1] == "bias" and parts[-2] == "LayerNorm":
    parts[-1] = "beta"
  return "bert/" + "/".join(parts), transpose


def hf_state_as_numpy(hf_dir: Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  return load_file(str(hf_dir / "model.safetensors"))


def write_google_tf_checkpoint(state: dict[str, np.ndarray], prefix: Path,
                               extra: dict[str, np.ndarray] | None = None) -> None:
  """Writes a TF v1 (bundle V2) checkpoint with Google's names, using TensorFlow's SaveV2 op."""
  import tensorflow as tf
  names, tensors = [], []
  for key, value in state.items():
    if key.endswith("position_ids"):
      continue
    name, transpose = hf_to_google_name(key)
    names.append(name)
    tensors.append(tf.constant(value.T if transpose else value))
  for name, value in (extra or {}).items():
    names.append(name)
    tensors.append(tf.constant(value))
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=tensors)


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                        timeout=600)


SENTENCES = [
    ("The cat sat on the mat.", None),
    ("Stock markets fell sharply after the central bank raised interest rates again on Monday.",
     None),
    ("What is the capital city of France?", "Paris is the capital of France."),
    ("A man is playing a guitar.", "Someone plays an instrument on a stage in front of a crowd."),
    ("Hi!", None),
]
