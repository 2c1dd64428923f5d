"""A model directory → a Hugging Face BERT folder that `transformers.BertModel` loads."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtdnn_jax.conversion.layout import export_params
from mtdnn_jax.fileio import atomic_directory, write_json
from mtdnn_jax.model_dir import VOCAB_FILE, flatten_params, load_model_dir


def export_hf(model_dir: str | os.PathLike, output: str | os.PathLike, *,
              overwrite: bool = False) -> Path:
  from safetensors.numpy import save_file

  model = load_model_dir(model_dir)
  config = model.config
  state = export_params({k: np.asarray(v) for k, v in flatten_params(model.params).items()},
                        config, "torch")
  hf_config = {**config.to_dict(), "model_type": "bert", "architectures": ["BertModel"]}
  settings = model.tokenizer_settings
  tokenizer_config = {
      "tokenizer_class": "BertTokenizer", "do_lower_case": settings.do_lower_case,
      "tokenize_chinese_chars": settings.tokenize_chinese_chars,
      "strip_accents": settings.strip_accents, "model_max_length": config.max_position_embeddings,
      "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
      "mask_token": "[MASK]"}
  with atomic_directory(output, overwrite=overwrite) as tmp:
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    write_json(tmp / "config.json", hf_config)
    write_json(tmp / "tokenizer_config.json", tokenizer_config)
    (tmp / "vocab.txt").write_bytes((model.path / VOCAB_FILE).read_bytes())
  return Path(output)
