"""Bucketed batches and the multi-task sampler: shapes, coverage, schedule, resuming, hosts."""
import collections
import itertools
import math

import numpy as np
import pytest

from mtdnn_jax.data.batching import (Buckets, eval_batches, fit_bucket_lengths, padded_tokens,
                                     plan_task_batches)
from mtdnn_jax.data.features import IGNORE_LABEL, Features
from mtdnn_jax.data.sampler import MultiTaskSampler

PAD, CLS, SEP = 0, 101, 102
SPECIAL = dict(pad_id=PAD, cls_id=CLS, sep_id=SEP)
BUCKETS = Buckets.make([16, 32, 64], [8, 4, 2])


def synthetic_features(n, seed, max_len=64, candidates=1, per_token=False, regression=False):
  """Examples whose tokens encode (example, candidate, position), so batches can be checked."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, max_len + 1, n * candidates)
  ids = np.concatenate([1000 + 10 * i + np.arange(length) % 10 for i, length in enumerate(lengths)])
  seq_offsets = np.concatenate([[0], np.cumsum(lengths)])
  labels = (rng.normal(size=n).astype(np.float32) if regression
            else rng.integers(0, 2, len(ids) if per_token else n).astype(np.int32))
  return Features(input_ids=ids.astype(np.int32), segment_ids=(np.arange(len(ids)) % 2).astype(np.int8),
                  seq_offsets=seq_offsets,
                  example_offsets=np.arange(0, n * candidates + 1, candidates),
                  labels=labels, uids=np.asarray([str(i) for i in range(n)]))


def real_rows(batch):
  keep = batch["weights"] > 0
  return list(zip(batch["task_id"][keep].tolist(), batch["example_index"][keep].tolist()))


def one_epoch(sampler):
  return list(itertools.islice(iter(sampler), sampler.steps_per_epoch()))


TASKS = [synthetic_features(100, 0), synthetic_features(37, 1, max_len=16),
         synthetic_features(260, 2)]


def make_sampler(features=TASKS, **kwargs):
  return MultiTaskSampler(features, BUCKETS, seed=kwargs.pop("seed", 7), **SPECIAL, **kwargs)


def expected_batches(features):
  bucket_of = BUCKETS.assign(features.example_lengths)
  return sum(math.ceil(np.sum(bucket_of == b) / size) for b, size in enumerate(BUCKETS.batch_sizes))


def test_shapes_are_bounded_by_buckets_and_rows_match_features():
  batches = one_epoch(make_sampler()) + one_epoch(make_sampler(mixed=True))
  shapes = {b["input_ids"].shape for b in batches}
  assert len(shapes) <= len(BUCKETS)
  assert shapes <= {(8, 16), (4, 32), (2, 64)}
  for batch in batches[:20]:
    for row, (t, e) in enumerate(zip(batch["task_id"], batch["example_index"])):
      if e < 0:  # padding: weight 0, a minimal [CLS] [SEP] row
        assert batch["weights"][row] == 0
        assert batch["input_ids"][row, :3].tolist() == [CLS, SEP, PAD]
        assert batch["attention_mask"][row].sum() == 2
        continue
      f = TASKS[t]
      start, end = f.seq_offsets[e], f.seq_offsets[e + 1]
      assert batch["weights"][row] == 1 and batch["labels"][row] == f.labels[e]
      assert batch["attention_mask"][row].sum() == end - start
      assert np.array_equal(batch["input_ids"][row, :end - start], f.input_ids[start:end])
      assert np.array_equal(batch["segment_ids"][row, :end - start], f.segment_ids[start:end])
      assert not batch["input_ids"][row, end - start:].any()
    assert all(batch[k].dtype == np.int32 for k in ("input_ids", "segment_ids", "attention_mask",
                                                     "task_id", "example_index"))
    assert batch["weights"].dtype == np.float32


def test_every_example_once_per_epoch_and_tasks_visited_in_proportion():
  batches = one_epoch(make_sampler())
  rows = [row for batch in batches for row in real_rows(batch)]
  assert sorted(rows) == [(t, e) for t, f in enumerate(TASKS) for e in range(len(f))]
  per_task = collections.Counter(int(b["task_id"][0]) for b in batches)
  # mix_opt 0: each task's batch count is what its data fills, no more, no less.
  assert per_task == {t: expected_batches(f) for t, f in enumerate(TASKS)}
  assert all(len(set(b["task_id"].tolist())) == 1 for b in batches)  # one task per batch
  # Shuffled together: the largest task is not bunched at either end of the epoch.
  order = [int(b["task_id"][0]) for b in batches]
  half = len(order) // 2
  assert 0 < order[:half].count(2) < per_task[2]


def test_main_task_last_and_ratio():
  order = [int(b["task_id"][0]) for b in one_epoch(make_sampler(mix_opt=1))]
  n_main = expected_batches(TASKS[0])
  assert order[-n_main:] == [0] * n_main and 0 not in order[:-n_main]
  ratio = make_sampler(ratio=0.5)
  counts = collections.Counter(int(b["task_id"][0]) for b in one_epoch(ratio))
  assert counts[0] == n_main and counts[1] + counts[2] == int(0.5 * n_main)


def test_mixed_batches_hold_several_tasks():
  batches = one_epoch(make_sampler(mixed=True))
  rows = [row for batch in batches for row in real_rows(batch)]
  assert sorted(rows) == [(t, e) for t, f in enumerate(TASKS) for e in range(len(f))]
  assert any(len({t for t, _ in real_rows(b)}) > 1 for b in batches)
  regression = synthetic_features(30, 8, regression=True)
  labels = [b["labels"] for b in one_epoch(make_sampler([TASKS[1], regression], mixed=True))]
  assert all(l.dtype == np.float32 for l in labels)  # class ids ride along exactly as floats
  with pytest.raises(ValueError, match="one batch layout"):
    make_sampler([TASKS[0], synthetic_features(5, 3, candidates=2)], mixed=True)


def test_reshuffled_each_epoch_and_reproducible_from_seed():
  def order(sampler, epochs=2):
    return [real_rows(b) for b in itertools.islice(iter(sampler), sampler.steps_per_epoch() * epochs)]

  two_epochs = order(make_sampler())
  steps = make_sampler().steps_per_epoch()
  assert two_epochs[:steps] != two_epochs[steps:]  # a new order in epoch 1
  assert order(make_sampler()) == two_epochs  # same (seed, epoch), same order
  assert order(make_sampler(seed=8)) != two_epochs


@pytest.mark.parametrize("k", [0, 1, 17, 40])
def test_resume_at_step_k_yields_exactly_the_rest(k):
  reference = make_sampler()
  steps = reference.steps_per_epoch()
  full = [real_rows(b) for b in itertools.islice(iter(reference), 2 * steps)]
  consumed = make_sampler()
  it = iter(consumed)
  for _ in range(k):
    next(it)
  state = consumed.state_dict()
  assert state == {"epoch": k // steps, "step": k % steps}
  resumed = make_sampler()
  resumed.load_state_dict(dict(state))
  rest = [real_rows(b) for b in itertools.islice(iter(resumed), 2 * steps - k)]
  assert rest == full[k:]


def test_two_hosts_see_every_example_once_and_split_each_global_batch():
  single, host0, host1 = make_sampler(), make_sampler(host_index=0, host_count=2), make_sampler(
      host_index=1, host_count=2)
  rows = []
  for whole, a, b in zip(one_epoch(single), one_epoch(host0), one_epoch(host1)):
    assert a["input_ids"].shape[0] == b["input_ids"].shape[0] == whole["input_ids"].shape[0] // 2
    for key in whole:
      assert np.array_equal(np.concatenate([a[key], b[key]]), whole[key])
    rows += real_rows(a) + real_rows(b)
  assert sorted(rows) == [(t, e) for t, f in enumerate(TASKS) for e in range(len(f))]
  with pytest.raises(ValueError, match="not divisible by 3 hosts"):
    make_sampler(host_index=0, host_count=3)


def test_ranking_and_sequence_labelling_batches():
  ranking = synthetic_features(9, 4, max_len=16, candidates=3)
  batch = next(iter(make_sampler([ranking])))
  assert batch["input_ids"].shape == (8, 3, 16) and batch["candidate_mask"].shape == (8, 3)
  real = batch["weights"] > 0
  assert (batch["candidate_mask"][real] == 1).all() and (batch["candidate_mask"][~real] == 0).all()
  tagging = synthetic_features(5, 5, max_len=16, per_token=True)
  batch = next(iter(make_sampler([tagging])))
  assert batch["labels"].shape == (8, 16)
  e, row = int(batch["example_index"][0]), 0
  start, end = tagging.seq_offsets[e], tagging.seq_offsets[e + 1]
  assert np.array_equal(batch["labels"][row, :end - start], tagging.labels[start:end])
  assert (batch["labels"][row, end - start:] == IGNORE_LABEL).all()


def test_eval_batches_cover_the_split_in_file_order():
  features = synthetic_features(23, 6, regression=True)
  batches = list(eval_batches(0, features, BUCKETS, **SPECIAL))
  rows = [e for b in batches for _, e in real_rows(b)]
  assert sorted(rows) == list(range(23))
  bucket_of = BUCKETS.assign(features.example_lengths)
  assert rows == [e for b in range(len(BUCKETS)) for e in np.flatnonzero(bucket_of == b)]
  assert batches[0]["labels"].dtype == np.float32
  labels = {e: l for b in batches for e, l, w in zip(b["example_index"], b["labels"], b["weights"]) if w}
  assert all(labels[e] == features.labels[e] for e in range(23))


def test_too_long_examples_and_bad_buckets_are_refused():
  with pytest.raises(ValueError, match="longer than the largest bucket"):
    plan_task_batches(0, synthetic_features(4, 7, max_len=100), BUCKETS, None)
  with pytest.raises(ValueError, match="increasing"):
    Buckets.make([64, 32], 8)
  with pytest.raises(ValueError, match="one positive batch size per bucket"):
    Buckets.make([32, 64], [8])
  with pytest.raises(ValueError, match="outside the schedule"):
    make_sampler().load_state_dict({"epoch": 0, "step": 10_000})


def test_fitted_buckets_compute_the_fewest_padded_tokens():
  """Against every admissible choice, enumerated (multiples of 8 ending at max_len)."""
  rng = np.random.default_rng(0)
  for _ in range(100):
    max_len = int(rng.choice([32, 64, 128]))
    lengths = rng.integers(2, max_len + 1, rng.integers(1, 40))
    count = int(rng.integers(1, 5))
    fitted = fit_bucket_lengths(lengths, count, max_len)
    assert len(fitted) <= count and fitted[-1] == max_len
    assert all(b % 8 == 0 for b in fitted)
    shorter = sorted(set(np.minimum(-(-lengths // 8) * 8, max_len)) - {max_len})
    best = min(padded_tokens(lengths, [*c, max_len])
               for k in range(count) for c in itertools.combinations(shorter, k))
    assert padded_tokens(lengths, fitted) == best
