"""Tokenization against the tokenizer that ships with the real model, and BERT's CJK rule."""
import pytest

from mtdnn_jax.errors import InputError
from mtdnn_jax.tokenization import Tokenizer, TokenizerSettings, guess_do_lower_case, pad_encodings
from tests.helpers import SENTENCES


@pytest.fixture(scope="module")
def tokenizer(minilm_hf_dir):
  return Tokenizer(minilm_hf_dir / "vocab.txt", TokenizerSettings(do_lower_case=True))


def test_full_vocabulary_is_loaded(tokenizer):
  # transformers 5 silently builds a 5-token vocabulary from `vocab_file=`; we pass `vocab=`.
  assert tokenizer.vocab_size == 30522
  assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id) == (0, 100, 101, 102)


def test_matches_the_models_own_tokenizer_json(tokenizer, minilm_hf_dir):
  from tokenizers import Tokenizer as RustTokenizer
  shipped = RustTokenizer.from_file(str(minilm_hf_dir / "tokenizer.json"))
  shipped.no_padding()  # the file pads to 128 for sentence-transformers; we pad per batch
  texts = [t for pair in SENTENCES for t in pair if t] + ["Ünïcödé naïve café", "don't STOP!!"]
  for text in texts:
    assert tokenizer.encode(text).input_ids == shipped.encode(text).ids, text
  for a, b in SENTENCES:
    if b:
      theirs = shipped.encode(a, b)
      ours = tokenizer.encode(a, b)
      assert ours.input_ids == theirs.ids and ours.segment_ids == theirs.type_ids


def test_pair_layout_and_longest_first_truncation(tokenizer):
  enc = tokenizer.encode("one two three four five six", "seven", max_seq_len=7)
  tokens = tokenizer.convert_ids_to_tokens(enc.input_ids)
  # Longest-first trims the longer text, one token at a time, until the pair fits in 7.
  assert tokens == ["[CLS]", "one", "two", "three", "[SEP]", "seven", "[SEP]"]
  assert enc.segment_ids == [0, 0, 0, 0, 0, 1, 1]


def test_padding(tokenizer):
  batch = pad_encodings([tokenizer.encode("hello"), tokenizer.encode("hello world")], 6)
  assert batch["input_ids"].tolist() == [[101, 7592, 102, 0, 0, 0], [101, 7592, 2088, 102, 0, 0]]
  assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]]


def test_chinese_characters_split_as_bert_does(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "北",
                              "京", "模", "型", "bert", "##s"]) + "\n", encoding="utf-8")
  tokenizer = Tokenizer(vocab, TokenizerSettings(do_lower_case=True))
  assert tokenizer.tokenize("我爱北京") == ["我", "爱", "北", "京"]
  assert tokenizer.tokenize("BERTs模型") == ["bert", "##s", "模", "型"]
  assert tokenizer.tokenize("我爱上海") == ["我", "爱", "[UNK]", "[UNK]"]


def test_cased_names():
  assert guess_do_lower_case("chinese_L-12_H-768_A-12")
  assert guess_do_lower_case("uncased_L-12_H-768_A-12")
  assert not guess_do_lower_case("cased_L-12_H-768_A-12")
  assert not guess_do_lower_case("multi_cased_L-12_H-768_A-12")


def test_vocab_without_special_tokens_is_refused(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("a\nb\n")
  with pytest.raises(InputError, match=r"vocab.txt: vocabulary lacks the special tokens"):
    Tokenizer(vocab)
