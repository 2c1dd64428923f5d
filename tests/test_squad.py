"""SQuAD v1.1/v2.0: reading the official JSON, windows, span post-processing and official EM/F1."""
import json

import numpy as np
import pytest

from mtdnn_jax.data.squad import NOT_CONTEXT, SquadExample, make_windows, read_squad
from mtdnn_jax.errors import InputError
from mtdnn_jax.squad_eval import (best_null_threshold, evaluate, exact_match, f1, normalize_answer,
                                  postprocess, write_predictions)
from mtdnn_jax.tokenization import Tokenizer

# Twenty words, each one WordPiece token, so token positions are word positions.
NUMBERS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
           "fifteen sixteen seventeen eighteen nineteen twenty")
UNICODE_CONTEXT = "Le café à Zürich coûte 5 € — 東京 は 🗼 Tokyo Tower, naïve."
EIFFEL = "The Eiffel Tower is in Paris, France."


@pytest.fixture(scope="module")
def tokenizer(minilm_hf_dir):
  return Tokenizer.from_model_dir(minilm_hf_dir)


def answer(context, text):
  return {"text": text, "answer_start": context.index(text)}


def squad_file(path, paragraphs, version="1.1"):
  path.write_text(json.dumps({"version": version, "data": [
      {"title": "t", "paragraphs": paragraphs}]}, ensure_ascii=False), encoding="utf-8")
  return path


def v2_file(tmp_path):
  return squad_file(tmp_path / "dev-v2.0.json", [
      {"context": EIFFEL, "qas": [
          {"id": "q-where", "question": "Where is the tower?", "is_impossible": False,
           "answers": [answer(EIFFEL, "Paris"), answer(EIFFEL, "Paris, France")]},
          {"id": "q-none", "question": "Who painted it?", "is_impossible": True, "answers": [],
           "plausible_answers": [answer(EIFFEL, "Eiffel")]}]},
      {"context": UNICODE_CONTEXT, "qas": [
          {"id": "q-city", "question": "Which city?", "is_impossible": False,
           "answers": [answer(UNICODE_CONTEXT, "東京")]}]}], version="v2.0")


def test_reads_official_v1_and_v2(tmp_path):
  answers = [answer(UNICODE_CONTEXT, "Zürich"), answer(UNICODE_CONTEXT, "🗼 Tokyo Tower")]
  v1 = squad_file(tmp_path / "dev-v1.1.json", [{"context": UNICODE_CONTEXT, "qas": [
      {"id": "q1", "question": "Where?", "answers": answers}]}])
  [example] = read_squad(v1, "1.1")
  # Offsets count code points, as Python (and the official files) do: the emoji is one.
  assert example == SquadExample("q1", "Where?", UNICODE_CONTEXT,
                                 (("Zürich", 10), ("🗼 Tokyo Tower", 34)), False)
  examples = read_squad(v2_file(tmp_path), "2.0")
  assert [ex.id for ex in examples] == ["q-where", "q-none", "q-city"]
  assert examples[0].answers == (("Paris", 23), ("Paris, France", 23))
  # Plausible answers of an unanswerable question are not answers.
  assert examples[1].is_impossible and examples[1].answers == ()
  assert examples[2].context == UNICODE_CONTEXT and examples[2].answers == (("東京", 29),)


def test_bad_files_are_named_with_their_location(tmp_path):
  no_data = tmp_path / "no_data.json"
  no_data.write_text('{"version": "1.1", "articles": []}')
  with pytest.raises(InputError, match='no top-level "data"') as e:
    read_squad(no_data, "1.1")
  assert e.value.path == str(no_data)

  shifted = {"text": "Paris", "answer_start": 22}
  mismatch = squad_file(tmp_path / "mismatch.json", [{"context": EIFFEL, "qas": [
      {"id": "q-shifted", "question": "Where?", "answers": [shifted]}]}])
  with pytest.raises(InputError) as e:
    read_squad(mismatch, "1.1")
  assert e.value.path == str(mismatch)
  assert e.value.field == "data[0].paragraphs[0].qas[0].answers[0]"
  assert "'q-shifted'" in e.value.problem and "answer_start=22" in e.value.problem
  assert "context[22:27] is ' Pari'" in e.value.problem

  broken = tmp_path / "broken.json"
  broken.write_text('{"version": "1.1",\n "data": [\n  {"title": "x",,}\n]}')
  with pytest.raises(InputError, match="not valid JSON") as e:
    read_squad(broken, "1.1")
  assert e.value.line == 3

  latin1 = tmp_path / "latin1.json"
  latin1.write_bytes('{"version": "1.1",\n "data": ["café"]}'.encode("latin-1"))
  with pytest.raises(InputError, match="not UTF-8") as e:
    read_squad(latin1, "1.1")
  assert e.value.line == 2

  # A v2.0 file read as v1.1 says so instead of silently treating "no answer" as an answer.
  with pytest.raises(InputError, match="is_impossible.*version 2.0"):
    read_squad(v2_file(tmp_path), "1.1")


def unicode_example(qid, text):
  return SquadExample(qid, "What?", UNICODE_CONTEXT, ((text, UNICODE_CONTEXT.index(text)),))


def number_example(qid, first_word, last_word):
  words = NUMBERS.split()
  text = " ".join(words[first_word:last_word + 1])
  return SquadExample(qid, "where?", NUMBERS, ((text, NUMBERS.index(text)),))


def test_windows_stride_and_answers_at_window_borders(tokenizer):
  # [CLS] where ? [SEP] leaves 13 - 4 - 1 = 8 context tokens per window; windows start every
  # 3 tokens and cover words 0-7, 3-10, 6-13, 9-16, 12-19 (the last one reaches the end).
  examples = [number_example("six-eight", 5, 7), number_example("nine-eleven", 8, 10),
              number_example("seven-nine", 6, 8)]
  windows = make_windows(examples, tokenizer, max_seq_len=13, doc_stride=3, max_query_len=4,
                         training=True)
  assert windows.example_index.tolist() == [0] * 5 + [1] * 5 + [2] * 5
  words = NUMBERS.split()
  for w in range(5):
    tokens = tokenizer.convert_ids_to_tokens(windows.input_ids[w])
    assert tokens == ["[CLS]", "where", "?", "[SEP]", *words[3 * w:3 * w + 8], "[SEP]"]
    assert windows.segment_ids[w].tolist() == [0] * 4 + [1] * 9
  # "six seven eight" (words 5-7) ends on window 0's last context token: inside, exactly. It
  # starts one token before window 2 begins: cut, so [CLS]. Window-relative position = word
  # position - window start + 4.
  assert windows.start_positions[:5].tolist() == [9, 6, 0, 0, 0]
  assert windows.end_positions[:5].tolist() == [11, 8, 0, 0, 0]
  # "nine ten eleven" (words 8-10) ends on window 1's last token and starts on window 3's
  # first-but-one: inside windows 1 and 2, cut in 0 and 3.
  assert windows.start_positions[5:10].tolist() == [0, 9, 6, 0, 0]
  assert windows.end_positions[5:10].tolist() == [0, 11, 8, 0, 0]
  # "seven eight nine" (words 6-8) ends one token after window 0 (cut) and starts on window
  # 2's first context token (inside).
  assert windows.start_positions[10:].tolist() == [0, 7, 4, 0, 0]
  assert windows.end_positions[10:].tolist() == [0, 9, 6, 0, 0]
  for w in np.flatnonzero(windows.start_positions):
    example = examples[windows.example_index[w]]
    decoded = example.context[windows.token_char_start[w, windows.start_positions[w]]:
                              windows.token_char_end[w, windows.end_positions[w]]]
    assert decoded == example.answers[0][0]

  # Each context token is scored in exactly one window; "seven" (word 6) has 1 token on its
  # right in window 0, 3 on each side in window 1, none on its left in window 2 → window 1.
  first = windows.token_is_max_context[:5]
  assert first.sum() == 20
  assert [first[w, 4 + 6 - 3 * w] for w in range(3)] == [False, True, False]
  # "six" (word 5) has 2 tokens on its shorter side in windows 0 and 1: the earlier one wins.
  assert [first[w, 4 + 5 - 3 * w] for w in range(2)] == [True, False]
  assert not first[:, :4].any() and not first[:, -1].any()


def test_windows_keep_unicode_offsets_and_mark_no_answer(tmp_path, tokenizer):
  examples = read_squad(v2_file(tmp_path), "2.0")
  # "京" starts where the token "東" ends: only the overlapping token may be taken.
  answers = ["Zürich", "東京", "京", "🗼 Tokyo Tower", "naïve", "€"]
  examples += [unicode_example(f"u{i}", text) for i, text in enumerate(answers)]
  windows = make_windows(examples, tokenizer, max_seq_len=14, doc_stride=2, max_query_len=4,
                         training=True)
  assert len(windows) > len(examples)  # several windows per context
  for e, example in enumerate(examples):
    mine = np.flatnonzero(windows.example_index == e)
    found = [example.context[windows.token_char_start[w, windows.start_positions[w]]:
                             windows.token_char_end[w, windows.end_positions[w]]]
             for w in mine if windows.start_positions[w] != 0]
    if example.is_impossible:
      assert not found and (windows.end_positions[mine] == 0).all()
    else:
      assert found and set(found) == {example.answers[0][0]}, example.id
  # The offset map covers context tokens only, and the context windows, read back through it,
  # are the original context's words with accents, CJK and emoji intact.
  last = np.flatnonzero(windows.example_index == len(examples) - 1)[-1]
  in_context = windows.token_char_start[last] != NOT_CONTEXT
  assert (windows.segment_ids[last][in_context] == 1).all() and not in_context[:4].any()
  pieces = [UNICODE_CONTEXT[a:b] for a, b in zip(windows.token_char_start[last][in_context],
                                                  windows.token_char_end[last][in_context])]
  assert pieces[-2:] == ["naïve", "."]
  assert make_windows(examples, tokenizer, max_seq_len=14, doc_stride=2,
                      max_query_len=4).start_positions is None


def test_gold_answers_as_predictions_score_100(tmp_path):
  examples = read_squad(v2_file(tmp_path), "2.0")
  gold = {ex.id: ex.answers[-1][0] if ex.answers else "" for ex in examples}
  assert evaluate(examples, gold) == {
      "exact": 100.0, "f1": 100.0, "total": 3, "HasAns_exact": 100.0, "HasAns_f1": 100.0,
      "HasAns_total": 2, "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1}
  v1 = [ex for ex in examples if not ex.is_impossible]
  # A v1.1 set has no unanswerable questions, so no NoAns group (as the official script).
  assert evaluate(v1, gold) == {"exact": 100.0, "f1": 100.0, "total": 2, "HasAns_exact": 100.0,
                                "HasAns_f1": 100.0, "HasAns_total": 2}


def test_official_normalisation_and_scores_by_hand():
  assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"  # '-' is punctuation
  assert normalize_answer("An apple a day, the end.") == "apple day end"
  assert normalize_answer("theatre") == "theatre"  # articles are whole words only

  def ex(qid, *golds):
    return SquadExample(qid, "?", "", tuple((g, 0) for g in golds), not golds)

  examples = [ex("a", "Eiffel Tower"), ex("b", "Eiffel Tower"), ex("c", "Paris", "in Paris"),
              ex("d"), ex("e"), ex("f", "Paris")]
  predictions = {"a": "the Eiffel tower", "b": "tower in Paris", "c": "Paris, France",
                 "d": "", "e": "Paris", "f": ""}
  # a: "eiffel tower" both ways → EM 1, F1 1.
  # b: pred {tower, in, paris} vs gold {eiffel, tower}: 1 common, P = 1/3, R = 1/2,
  #    F1 = 2·(1/3·1/2)/(1/3 + 1/2) = (1/3)/(5/6) = 0.4; EM 0.
  # c: "paris france" vs "paris": P = 1/2, R = 1, F1 = 2/3; vs "in paris": P = R = 1/2,
  #    F1 = 1/2; the best gold gives 2/3; EM 0.
  # d: no answer, predicted "" → 1, 1.  e: no answer, predicted "Paris" → 0, 0.
  # f: answerable, predicted "" → 0, 0.
  assert f1("Eiffel Tower", "tower in Paris") == pytest.approx(0.4)
  assert exact_match("Eiffel Tower", "the Eiffel tower") == 1.0
  scores = evaluate(examples, predictions)
  assert scores == pytest.approx({
      "exact": 100 * 2 / 6, "f1": 100 * (1 + 0.4 + 2 / 3 + 1) / 6, "total": 6,
      "HasAns_exact": 100 * 1 / 4, "HasAns_f1": 100 * (1 + 0.4 + 2 / 3) / 4, "HasAns_total": 4,
      "NoAns_exact": 100 * 1 / 2, "NoAns_f1": 100 * 1 / 2, "NoAns_total": 2})
  # A gold answer that normalises to nothing is dropped: "" does not match "the" here.
  assert evaluate([ex("g", "the", "Paris")], {"g": ""}) == {
      "exact": 0.0, "f1": 0.0, "total": 1, "HasAns_exact": 0.0, "HasAns_f1": 0.0,
      "HasAns_total": 1}
  # A question without a prediction scores 0 and still counts (as in the v1.1 script).
  del predictions["a"]
  assert evaluate(examples, predictions)["exact"] == pytest.approx(100 * 1 / 6)


def logits_with_peaks(windows, peaks, floor=-10.0):
  """Start/end logits at `floor` everywhere except {(window, position): (start, end) logit}."""
  start, end = (np.full(windows.input_ids.shape, floor, np.float32) for _ in range(2))
  for (w, position), (start_value, end_value) in peaks.items():
    start[w, position] = max(start[w, position], start_value)
    end[w, position] = max(end[w, position], end_value)
  return start, end


def test_postprocess_recovers_exact_original_text_across_windows(tokenizer):
  target = "🗼 Tokyo Tower"
  example = unicode_example("u", target)
  windows = make_windows([example], tokenizer, max_seq_len=14, doc_stride=2, max_query_len=4,
                         training=True)
  # The answer's tokens sit inside several windows; peak in the window where its start has the
  # most context, and put decoys elsewhere that the rules must reject.
  inside = [w for w in range(len(windows)) if windows.start_positions[w]
            and windows.token_is_max_context[w, windows.start_positions[w]]]
  assert len(inside) == 1 and len(windows) >= 4
  w, s, e = inside[0], windows.start_positions[inside[0]], windows.end_positions[inside[0]]
  other, repeated = 1, 4  # window 1's first context token has more context in window 0
  assert w != other and not windows.token_is_max_context[other, repeated]
  assert windows.segment_ids[w, s - 1] == 1
  peaks = {(w, s): (5.0, -10.0), (w, e): (-10.0, 5.0),  # the answer: score 10
           (w, s - 1): (-10.0, 9.0),  # (s, s - 1) would score 14 but ends before it starts
           (other, repeated): (9.0, 9.0),  # 18, but the start belongs to another window
           (w, 0): (4.0, 4.0),  # [CLS]: the null answer
           (w, 1): (20.0, 20.0)}  # a question token
  start_logits, end_logits = logits_with_peaks(windows, peaks)
  predictions, nbest, null_diffs = postprocess(windows, start_logits, end_logits, [example])
  assert predictions == {"u": target}
  assert nbest["u"][0]["text"] == target and nbest["u"][0]["start_logit"] == 5.0
  assert (nbest["u"][0]["char_start"], nbest["u"][0]["char_end"]) == (34, 47)
  assert sum(entry["probability"] for entry in nbest["u"]) == pytest.approx(1.0)
  assert len(nbest["u"]) == 20 and len({entry["text"] for entry in nbest["u"]}) == 20
  # The null score is the lowest [CLS] score over windows: -20 where no peak is.
  assert null_diffs["u"] == pytest.approx(-20.0 - 10.0)

  # Too long: with max_answer_len 2 the 3-token answer ("[UNK] tokyo tower") is not allowed.
  short, _, _ = postprocess(windows, start_logits, end_logits, [example], max_answer_len=2)
  assert short["u"] != target and len(tokenizer.tokenize(short["u"])) <= 2

  # v2: a null score above the best span by more than the threshold predicts "".
  cls_everywhere = {(v, 0): (10.0, 10.0) for v in range(len(windows))}
  start_logits, end_logits = logits_with_peaks(windows, {**peaks, **cls_everywhere})
  for threshold, expected in ((0.0, ""), (10.0, target)):
    predictions, nbest, null_diffs = postprocess(windows, start_logits, end_logits, [example],
                                                 version="2.0", null_threshold=threshold)
    assert null_diffs["u"] == pytest.approx(20.0 - 10.0)  # null 10 + 10, span 5 + 5
    assert predictions["u"] == expected
    assert nbest["u"][0]["text"] == "" and nbest["u"][1]["text"] == target


def test_best_null_threshold_by_hand():
  def ex(qid, gold=None):
    return SquadExample(qid, "?", "", ((gold, 0),) if gold else (), gold is None)

  examples = [ex("a", "Paris"), ex("b", "Paris"), ex("c"), ex("d", "Eiffel Tower")]
  best_spans = {"a": "Paris", "b": "Paris", "c": "London", "d": "tower"}
  null_diffs = {"a": -2.0, "b": 1.0, "c": 3.0, "d": 5.0}
  # Start from all-null: only c is right (1). Answering in rising null diff: a +1 → 2 (thresh
  # -2), b +1 → 3 (thresh 1), c wrongly answered −1 → 2, d EM 0 → 2, F1 of "tower" vs "Eiffel
  # Tower" = 2·(1·1/2)/(1 + 1/2) = 2/3 → 2 2/3. Best: 3 of 4 at threshold 1 for both.
  assert best_null_threshold(null_diffs, examples, best_spans) == pytest.approx(
      {"best_exact": 75.0, "best_exact_thresh": 1.0, "best_f1": 75.0, "best_f1_thresh": 1.0})
  # Applying the threshold as postprocess does (null when diff > threshold) reaches that score.
  thresholded = {k: "" if null_diffs[k] > 1.0 else text for k, text in best_spans.items()}
  assert evaluate(examples, thresholded)["exact"] == 75.0
  # Nothing worth answering: the threshold stays at 0 with the all-null score.
  hopeless = {"a": "x", "b": "y", "c": "z", "d": "w"}
  assert best_null_threshold(null_diffs, examples, hopeless)["best_exact"] == 25.0
  assert best_null_threshold(null_diffs, examples, hopeless)["best_exact_thresh"] == 0.0


def test_write_predictions(tmp_path):
  path = tmp_path / "out" / "predictions.json"
  write_predictions(path, {"q1": "東京 🗼", "q2": ""})
  assert json.loads(path.read_text(encoding="utf-8")) == {"q1": "東京 🗼", "q2": ""}
  assert [p.name for p in path.parent.iterdir()] == ["predictions.json"]  # no temporary left
