"""scripts/extract_embeddings.py on the real MiniLM, checked against transformers' BertModel."""
import json

import numpy as np
import pytest
import torch

from mtdnn_jax.embeddings import EmbeddingExtractor
from mtdnn_jax.errors import InputError
from tests.helpers import SENTENCES, run_cli


@pytest.fixture(scope="module")
def input_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("emb") / "in.txt"
  lines = [a if b is None else f"{a} ||| {b}" for a, b in SENTENCES]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def test_cli_writes_one_record_per_line_matching_pytorch(input_file, tmp_path, minilm_dir,
                                                         minilm_hf_dir):
  from transformers import BertModel, BertTokenizer
  out = tmp_path / "out.jsonl"
  result = run_cli("scripts/extract_embeddings.py", "--model_dir", str(minilm_dir),
                   "--finput", str(input_file), "--foutput", str(out), "--layer", "3",
                   "--batch_size", "2", "--max_seq_len", "64")
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["line"] for r in records] == list(range(1, len(SENTENCES) + 1))

  hf = BertModel.from_pretrained(minilm_hf_dir, attn_implementation="eager").eval()
  hf_tokenizer = BertTokenizer(vocab=str(minilm_hf_dir / "vocab.txt"))
  for record, (a, b) in zip(records, SENTENCES):
    assert record["text_a"] == a and record.get("text_b") == b and record["layer"] == 3
    inputs = hf_tokenizer(a, b, return_tensors="pt")
    assert record["tokens"] == hf_tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    with torch.no_grad():
      expected = hf(**inputs, output_hidden_states=True).hidden_states[3][0].numpy()
    vectors = np.array(record["token_vectors"])
    assert vectors.shape == (len(record["tokens"]), 384)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    np.testing.assert_array_equal(record["cls"], vectors[0])


def test_compiles_at_most_once_per_bucket(minilm):
  extractor = EmbeddingExtractor(minilm, batch_size=4, max_seq_len=64)
  assert extractor.buckets == [16, 32, 64]
  tok = extractor.tokenizer
  texts = [" ".join(["word"] * n) for n in (1, 3, 5, 12, 20, 25, 40, 55, 2, 7, 33, 60, 9)]
  encodings = [tok.encode(t, max_seq_len=64) for t in texts]
  vectors = extractor.embed(encodings)
  assert [v.shape[0] for v in vectors] == [len(e) for e in encodings]
  extractor.embed(encodings[:5])
  assert extractor._forward._cache_size() == 3


def test_layer_out_of_range_is_refused(minilm):
  with pytest.raises(InputError, match=r"--layer: must be in \[-7, 6\]"):
    EmbeddingExtractor(minilm, layer=7)


def test_empty_line_names_file_and_line(tmp_path, minilm_dir):
  path = tmp_path / "in.txt"
  path.write_text("fine\n\nalso fine\n")
  out = tmp_path / "out.jsonl"
  result = run_cli("scripts/extract_embeddings.py", "--model_dir", str(minilm_dir),
                   "--finput", str(path), "--foutput", str(out))
  assert result.returncode == 2
  assert f"error: {path}:2: empty text" in result.stderr
  assert not out.exists()
