"""Checkpoint conversion both ways, on the real MiniLM weights and the real TF toy checkpoint."""
import json
import shutil

import numpy as np
import pytest
import torch

from mtdnn_jax.model_dir import flatten_params, load_model_dir
from mtdnn_jax.models import BertEncoder
from mtdnn_jax.tokenization import pad_encodings
from tests.helpers import (SENTENCES, hf_state_as_numpy, hf_to_google_name, run_cli,
                           write_google_tf_checkpoint)


def hf_forward(model, batch):
  with torch.no_grad():
    return model(input_ids=torch.tensor(batch["input_ids"]).long(),
                 token_type_ids=torch.tensor(batch["segment_ids"]).long(),
                 attention_mask=torch.tensor(batch["attention_mask"]).long(),
                 output_hidden_states=True)


def assert_parity(model_dir, hf_model, texts, atol=1e-4):
  """Our encoder on `model_dir` vs a transformers BertModel: every layer and the pooler."""
  model = load_model_dir(model_dir)
  tokenizer = model.tokenizer()
  encodings = [tokenizer.encode(a, b) for a, b in texts]
  batch = pad_encodings(encodings, max(len(e) for e in encodings))
  ours = BertEncoder(model.config).apply({"params": model.params}, batch["input_ids"],
                                         batch["segment_ids"], batch["attention_mask"],
                                         output_hidden_states=True)
  theirs = hf_forward(hf_model, batch)
  # The middle layers' activations reach |10|, where float32's rounding in another order of the
  # same sums (bert.attend: heads-major, the scale on the queries) gives ~1e-5 relative.
  for layer, hidden in enumerate(theirs.hidden_states):
    np.testing.assert_allclose(ours.hidden_states[layer], hidden.numpy(), atol=atol, rtol=2e-5)
  np.testing.assert_allclose(ours.last_hidden_state, theirs.last_hidden_state.numpy(),
                             atol=atol, rtol=0)
  np.testing.assert_allclose(ours.pooled_output, theirs.pooler_output.numpy(), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def hf_minilm(minilm_hf_dir):
  from transformers import BertModel
  return BertModel.from_pretrained(minilm_hf_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def google_tf_minilm(tmp_path_factory, minilm_hf_dir):
  """The MiniLM weights as a Google TF v1 checkpoint folder, written by TensorFlow, with the
  optimizer slots and pre-training heads real checkpoints carry."""
  folder = tmp_path_factory.mktemp("tf") / "uncased_L-6_H-384_A-12"
  folder.mkdir()
  state = hf_state_as_numpy(minilm_hf_dir)
  word = state["embeddings.word_embeddings.weight"]
  extra = {"global_step": np.array(1000, np.int64),
           "bert/embeddings/word_embeddings/adam_m": np.zeros_like(word),
           "bert/embeddings/word_embeddings/adam_v": np.zeros_like(word),
           "cls/predictions/output_bias": np.zeros(word.shape[0], np.float32),
           "cls/seq_relationship/output_weights": np.zeros((2, word.shape[1]), np.float32)}
  write_google_tf_checkpoint(state, folder / "bert_model.ckpt", extra)
  config = json.loads((minilm_hf_dir / "config.json").read_text())
  google_keys = {"attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                 "hidden_size", "initializer_range", "intermediate_size",
                 "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
                 "type_vocab_size", "vocab_size"}
  (folder / "bert_config.json").write_text(json.dumps({k: config[k] for k in google_keys}))
  shutil.copy(minilm_hf_dir / "vocab.txt", folder / "vocab.txt")
  return folder


def test_hf_folder_converts_with_parity(minilm_dir, hf_minilm):
  # minilm_dir is the packaged model converted by convert_torch_checkpoint on first use.
  provenance = json.loads((minilm_dir / "mtdnn_jax.json").read_text())["provenance"]
  assert provenance["source_format"] == "hf-bert"
  assert provenance["skipped"] == {"buffers (position ids, recomputed)": ["embeddings.position_ids"]}
  assert_parity(minilm_dir, hf_minilm, SENTENCES)


def test_export_to_hf_reproduces_every_tensor(tmp_path, minilm_dir, minilm_hf_dir):
  from transformers import AutoTokenizer, BertModel
  out = tmp_path / "hf"
  result = run_cli("convert/export_hf.py", "--model_dir", str(minilm_dir), "--output", str(out))
  assert result.returncode == 0, result.stderr
  original = hf_state_as_numpy(minilm_hf_dir)
  exported = hf_state_as_numpy(out)
  # position_ids is a buffer transformers recomputes as arange; nothing is lost by dropping it.
  np.testing.assert_array_equal(original.pop("embeddings.position_ids")[0], np.arange(512))
  assert set(exported) == set(original)
  for key, value in original.items():
    assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  model, info = BertModel.from_pretrained(out, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  tokenizer = AutoTokenizer.from_pretrained(out)
  reference = AutoTokenizer.from_pretrained(minilm_hf_dir)
  for text, _ in SENTENCES:
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]


def test_google_tf_checkpoint_converts_with_parity(tmp_path, google_tf_minilm, hf_minilm):
  out = tmp_path / "from_tf"
  result = run_cli("convert/tf_checkpoint.py", "--tf_checkpoint_root", str(google_tf_minilm),
                   "--output", str(out))
  assert result.returncode == 0, result.stderr
  assert "skipped 3 optimizer slots" in result.stdout
  assert "skipped 2 pre-training heads (cls/)" in result.stdout
  assert_parity(out, hf_minilm, SENTENCES)
  assert load_model_dir(out).tokenizer_settings.do_lower_case  # "uncased_..." folder


def test_real_tf_toy_checkpoint_converts_skips_slots_and_runs(tmp_path, shared_data):
  """The toy checkpoint TensorFlow wrote (keras-bert's test fixture), against transformers'
  BertModel loaded with the same TF tensors through the independent name rules in helpers."""
  import tensorflow as tf
  from transformers import BertConfig, BertModel
  toy = shared_data / "tf_bert_toy"
  out = tmp_path / "toy"
  result = run_cli("convert/tf_checkpoint.py", "--tf_checkpoint_root", str(toy),
                   "--output", str(out))
  assert result.returncode == 0, result.stderr
  skipped = json.loads((out / "mtdnn_jax.json").read_text())["provenance"]["skipped"]
  reader = tf.train.load_checkpoint(str(toy / "bert_model.ckpt"))
  all_names = set(reader.get_variable_to_shape_map())
  slots = {n for n in all_names if n.endswith(("/adam_m", "/adam_v")) or n == "global_step"}
  assert set(skipped["optimizer slots"]) == slots and len(slots) == 93
  heads = {n for n in all_names if n.startswith("cls/")} - slots
  assert set(skipped["pre-training heads (cls/)"]) == heads and len(heads) == 7

  hf = BertModel(BertConfig.from_json_file(toy / "bert_config.json"),
                 add_pooling_layer=True).eval()
  state = {}
  for key, param in hf.state_dict().items():
    if key.endswith("position_ids"):
      continue
    name, transpose = hf_to_google_name(key)
    value = reader.get_tensor(name)
    state[key] = torch.tensor(value.T if transpose else value)
  hf.load_state_dict(state, strict=False)
  assert_parity(out, hf, [("all work and no play", "makes jack a dull boy"), ("jack", None)],
                atol=1e-5)


def test_reference_mtdnn_checkpoint_keeps_heads(tmp_path, minilm_hf_dir, minilm_dir):
  state = {f"bert.{k}": torch.tensor(v) for k, v in hf_state_as_numpy(minilm_hf_dir).items()}
  head_w = torch.randn(3, 384)
  state.update({"scoring_list.0.weight": head_w, "scoring_list.0.bias": torch.zeros(3)})
  hf_config = json.loads((minilm_hf_dir / "config.json").read_text())
  run_config = {"num_attention_heads": hf_config["num_attention_heads"], "learning_rate": 5e-5,
                "init_checkpoint": "mt_dnn_base.pt", "task_types": ["Classification"]}
  path = tmp_path / "model_0.pt"
  torch.save({"state": state, "config": run_config, "optimizer": {"step": 3}}, path)
  out = tmp_path / "from_ref"
  result = run_cli("convert/torch_checkpoint.py", "--input", str(path), "--output", str(out),
                   "--vocab", str(minilm_hf_dir / "vocab.txt"))
  assert result.returncode == 0, result.stderr
  converted, reference = load_model_dir(out), load_model_dir(minilm_dir)
  assert converted.config == reference.config  # read off the tensors + the run's head count
  for key, value in flatten_params(reference.params).items():
    np.testing.assert_array_equal(flatten_params(converted.params)[key], value, err_msg=key)
  np.testing.assert_array_equal(converted.heads["scoring_list.0.weight"], head_w.numpy())
  assert converted.heads_meta["reference_config"]["learning_rate"] == 5e-5


def test_pytorch_bin_is_read_with_weights_only(tmp_path, minilm_hf_dir, minilm_dir):
  folder = tmp_path / "bin_model"
  folder.mkdir()
  for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
    shutil.copy(minilm_hf_dir / name, folder / name)
  state = {f"bert.{k}": torch.tensor(v) for k, v in hf_state_as_numpy(minilm_hf_dir).items()}
  torch.save(state, folder / "pytorch_model.bin")
  result = run_cli("convert/torch_checkpoint.py", "--input", str(folder),
                   "--output", str(tmp_path / "out"))
  assert result.returncode == 0, result.stderr
  ours = flatten_params(load_model_dir(tmp_path / "out").params)
  for key, value in flatten_params(load_model_dir(minilm_dir).params).items():
    np.testing.assert_array_equal(ours[key], value, err_msg=key)


class Gadget:  # a Python object a pickle might carry; weights_only loading must refuse it
  pass


def test_pickle_with_arbitrary_objects_is_refused(tmp_path, minilm_hf_dir):
  path = tmp_path / "evil.pt"
  torch.save({"state": {}, "config": Gadget()}, path)
  out = tmp_path / "out"
  result = run_cli("convert/torch_checkpoint.py", "--input", str(path), "--output", str(out),
                   "--vocab", str(minilm_hf_dir / "vocab.txt"))
  assert result.returncode == 2
  assert f"{path}: cannot be loaded with torch.load(weights_only=True)" in result.stderr
  assert not out.exists()


# --- bad input: one clear error naming the file and the problem, exit 2, nothing written ---

def _tf_variant(google_tf_minilm, tmp_path, change):
  folder = tmp_path / "uncased_variant"
  shutil.copytree(google_tf_minilm, folder)
  change(folder)
  return folder


def _convert_tf_fails(folder, tmp_path):
  out = tmp_path / "models" / "out"
  result = run_cli("convert/tf_checkpoint.py", "--tf_checkpoint_root", str(folder),
                   "--output", str(out))
  assert result.returncode == 2, result.stdout + result.stderr
  assert "Traceback" not in result.stderr
  assert not out.exists()
  assert not (out.parent.exists() and any(out.parent.iterdir())), "a temporary output remains"
  lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, result.stderr
  return lines[0]


def test_missing_vocab_file(tmp_path, google_tf_minilm):
  folder = _tf_variant(google_tf_minilm, tmp_path, lambda f: (f / "vocab.txt").unlink())
  assert _convert_tf_fails(folder, tmp_path) == f"error: {folder}/vocab.txt: vocabulary file not found"


def test_missing_checkpoint_file(tmp_path, google_tf_minilm):
  def remove(f):
    for index in f.glob("*.index"):
      index.unlink()
  folder = _tf_variant(google_tf_minilm, tmp_path, remove)
  assert _convert_tf_fails(folder, tmp_path).startswith(
      f"error: {folder}/bert_model.ckpt.index: no TensorFlow checkpoint found")


def _edit_config(folder, **changes):
  """Sets keys of the folder's bert_config.json; a value of None removes the key."""
  config = json.loads((folder / "bert_config.json").read_text())
  config.update(changes)
  (folder / "bert_config.json").write_text(
      json.dumps({k: v for k, v in config.items() if v is not None}))


def test_config_key_that_does_not_exist(tmp_path, google_tf_minilm):
  folder = _tf_variant(google_tf_minilm, tmp_path, lambda f: _edit_config(
      f, num_hidden_layers=None, num_hiden_layers=6))
  assert _convert_tf_fails(folder, tmp_path) == (
      f"error: {folder}/bert_config.json: unknown config key 'num_hiden_layers' "
      "(did you mean 'num_hidden_layers'?)")


def test_weights_whose_shapes_do_not_match_the_config(tmp_path, google_tf_minilm):
  folder = _tf_variant(google_tf_minilm, tmp_path,
                       lambda f: _edit_config(f, intermediate_size=1024))
  assert _convert_tf_fails(folder, tmp_path) == (
      f"error: {folder}/bert_model.ckpt: variable "
      "'bert/encoder/layer_0/intermediate/dense/kernel' has shape (384, 1536), but the config "
      "implies (384, 1024)")


def test_vocab_whose_size_differs_from_the_embedding_table(tmp_path, google_tf_minilm):
  folder = _tf_variant(google_tf_minilm, tmp_path,
                       lambda f: open(f / "vocab.txt", "a").write("extra_token\n"))
  assert _convert_tf_fails(folder, tmp_path) == (
      f"error: {folder}/vocab.txt: vocabulary has 30523 tokens but bert_config.json says "
      "vocab_size=30522")


def test_more_layers_than_the_config_is_an_error_not_a_skip(tmp_path, google_tf_minilm):
  folder = _tf_variant(google_tf_minilm, tmp_path, lambda f: _edit_config(f, num_hidden_layers=5))
  assert "is not part of a BERT encoder with 5 layers" in _convert_tf_fails(folder, tmp_path)


def test_existing_output_is_not_clobbered(tmp_path, minilm_dir):
  out = tmp_path / "hf"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  result = run_cli("convert/export_hf.py", "--model_dir", str(minilm_dir), "--output", str(out))
  assert result.returncode == 2 and "exists and is not empty" in result.stderr
  assert (out / "keep.txt").read_text() == "mine"


def test_damaged_model_directory_is_reported(tmp_path, minilm_dir):
  damaged = tmp_path / "damaged"
  shutil.copytree(minilm_dir, damaged)
  with open(damaged / "vocab.txt", "a") as f:
    f.write("one_more\n")
  from mtdnn_jax.errors import InputError
  with pytest.raises(InputError, match=r"vocab.txt: vocabulary has 30523 tokens but the "
                     r"word-embedding table has 30522 rows"):
    load_model_dir(damaged)


@pytest.mark.parametrize("script", ["convert/tf_checkpoint.py", "convert/torch_checkpoint.py",
                                    "convert/export_hf.py", "scripts/extract_embeddings.py"])
def test_cli_help(script):
  result = run_cli(script, "--help")
  assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
