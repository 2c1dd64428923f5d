"""Length-bucketed, fixed-shape batches of tokenized examples.

Each example goes to the shortest bucket that holds it, and every batch of a bucket has that
bucket's length and batch size, so a jitted step sees at most one shape per bucket and
compiles at most that many times. A bucket's last batch is filled up with padding rows whose
weight is 0; they hold `[CLS] [SEP]` (attention on those two tokens) rather than nothing, so
no attention implementation ever normalises over an all-masked row.

A batch is a dict of numpy arrays, B rows:
  input_ids, segment_ids, attention_mask  int32 [B, L]   ([B, K, L] for a ranking task: K candidates)
  candidate_mask                          int32 [B, K]   (ranking only: 1 for a real candidate)
  labels   [B] class id / best-candidate index / regression target: int32, or float32 when
           any task the batcher serves is a regression (one dtype for every batch of a run);
           int32 [B, L] per token for sequence labelling (IGNORE_LABEL where not scored)
  weights        float32 [B]  1 for a real example, 0 for padding
  task_id        int32 [B]
  example_index  int32 [B]    the row of the task's Features (uids: features.uids[i]); -1 padding
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Sequence

import numpy as np

from mtdnn_jax.data.features import IGNORE_LABEL, Features


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Sequence-length buckets, each with its own fixed batch size."""
  lengths: tuple[int, ...]  # increasing, e.g. (32, 64, 128, 256, 512)
  batch_sizes: tuple[int, ...]  # one per bucket (global batch size, before the host split)

  @classmethod
  def make(cls, lengths: Sequence[int], batch_sizes: int | Sequence[int]) -> Buckets:
    if isinstance(batch_sizes, int):
      batch_sizes = [batch_sizes] * len(lengths)
    return cls(tuple(int(x) for x in lengths), tuple(int(x) for x in batch_sizes))

  def __post_init__(self):
    if not self.lengths or list(self.lengths) != sorted(set(self.lengths)):
      raise ValueError(f"bucket lengths must be distinct and increasing, got {self.lengths}")
    if len(self.batch_sizes) != len(self.lengths) or min(self.batch_sizes) < 1:
      raise ValueError(f"need one positive batch size per bucket, got {self.batch_sizes} for "
                       f"buckets {self.lengths}")

  def __len__(self) -> int:
    return len(self.lengths)

  def assign(self, lengths: np.ndarray) -> np.ndarray:
    """Bucket index of each length; ValueError if one exceeds the largest bucket."""
    too_long = lengths > self.lengths[-1]
    if np.any(too_long):
      raise ValueError(f"{int(too_long.sum())} example(s) are longer than the largest bucket "
                       f"({int(lengths.max())} > {self.lengths[-1]}); add a bucket of at least "
                       "max_seq_len")
    return np.searchsorted(np.asarray(self.lengths), lengths, side="left")


def padded_tokens(lengths: np.ndarray, bucket_lengths: Sequence[int]) -> int:
  """Tokens computed when each length goes to the shortest bucket that holds it."""
  bucket_lengths = np.asarray(bucket_lengths)
  return int(bucket_lengths[np.searchsorted(bucket_lengths, lengths, side="left")].sum())


def fit_bucket_lengths(lengths: np.ndarray, count: int, max_len: int,
                       multiple: int = 8) -> tuple[int, ...]:
  """At most `count` bucket lengths, multiples of `multiple` ending at `max_len`, that compute
  the fewest padded tokens for examples of these `lengths` (all <= max_len).

  Exact: dynamic programming over the candidate boundaries (each distinct length rounded up
  to `multiple`). Rounding keeps shapes friendly to vector units; more buckets mean less
  padding but one more compilation each.
  """
  if count < 1:
    raise ValueError(f"need at least one bucket, got {count}")
  lengths = np.asarray(lengths, np.int64)
  if len(lengths) and lengths.max() > max_len:
    raise ValueError(f"a length {lengths.max()} exceeds max_len={max_len}")
  rounded = np.minimum(-(-lengths // multiple) * multiple, max_len)
  candidates = np.union1d(rounded, [max_len])  # sorted; the last is max_len
  per_candidate = np.searchsorted(candidates, rounded)
  examples = np.concatenate([[0], np.cumsum(np.bincount(per_candidate, minlength=len(candidates)))])
  # cost[i, j]: tokens when the examples of candidates i..j all go to a bucket of candidates[j]
  i, j = np.meshgrid(np.arange(len(candidates)), np.arange(len(candidates)), indexing="ij")
  cost = np.where(i <= j, candidates[j] * (examples[j + 1] - examples[i]), np.inf)
  best = cost[0].copy()  # best[j]: fewest tokens for candidates 0..j with j's bucket last
  choice = [np.zeros(len(candidates), np.int64)]
  for _ in range(1, count):
    # Either keep the previous split, or end a bucket at some i - 1 < j and start one at i.
    via = np.full((len(candidates), len(candidates)), np.inf)
    via[1:] = best[:-1, None] + cost[1:]
    start = np.argmin(via, axis=0)
    improved = via[start, np.arange(len(candidates))] < best
    best = np.where(improved, via[start, np.arange(len(candidates))], best)
    choice.append(np.where(improved, start, -1))
  bounds, j = [], len(candidates) - 1
  for level in range(count - 1, -1, -1):  # walk the choices back from max_len
    if level and choice[level][j] < 0:
      continue
    bounds.append(int(candidates[j]))
    if level == 0:
      break
    j = int(choice[level][j]) - 1
  return tuple(sorted(bounds))


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """Which examples form one global batch: rows (task_id, example index), padded to size."""
  bucket: int
  task_ids: np.ndarray  # int32 [n_real]
  indices: np.ndarray  # int64 [n_real]


def plan_task_batches(task_id: int, features: Features, buckets: Buckets,
                      rng: np.random.Generator | None) -> list[BatchPlan]:
  """One task's examples cut into bucketed batches; shuffled within buckets when `rng` is given,
  in file order otherwise (evaluation)."""
  return plan_pooled_batches([task_id], [features], buckets, rng)


def plan_pooled_batches(task_ids: Sequence[int], features: Sequence[Features], buckets: Buckets,
                        rng: np.random.Generator | None) -> list[BatchPlan]:
  """Examples of all given tasks pooled per bucket and cut into batches (rows may mix tasks)."""
  pooled_tasks = np.concatenate([np.full(len(f), t, np.int32) for t, f in zip(task_ids, features)])
  pooled_indices = np.concatenate([np.arange(len(f)) for f in features])
  pooled_buckets = np.concatenate([buckets.assign(f.example_lengths) if len(f) else
                                   np.zeros(0, np.int64) for f in features])
  plans = []
  for bucket in range(len(buckets)):
    members = np.flatnonzero(pooled_buckets == bucket)
    if rng is not None:
      members = rng.permutation(members)
    size = buckets.batch_sizes[bucket]
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      plans.append(BatchPlan(bucket, pooled_tasks[chunk], pooled_indices[chunk]))
  return plans


def make_batch(plan: BatchPlan, features: Mapping[int, Features], buckets: Buckets,
               pad_id: int, cls_id: int, sep_id: int, rows: slice = slice(None),
               num_candidates: Mapping[int, int] | None = None) -> dict[str, np.ndarray]:
  """Materialises `rows` (a host's share) of the padded global batch `plan`."""
  length = buckets.lengths[plan.bucket]
  global_size = buckets.batch_sizes[plan.bucket]
  row_ids = np.arange(global_size)[rows]
  first_task = int(plan.task_ids[0])
  per_token = features[first_task].labels_per_token
  candidates = features[first_task].max_candidates
  if candidates is not None and num_candidates:
    candidates = num_candidates[first_task]
  # Decided by all the tasks served, not this batch's, so the dtype never changes between
  # batches: with a regression task among them, float32 (class ids stay exact).
  label_dtype = (np.float32 if any(f.labels.dtype.kind == "f" for f in features.values())
                 else np.int32)
  k = candidates or 1
  n = len(row_ids)
  ids = np.full((n, k, length), pad_id, np.int32)
  segments = np.zeros((n, k, length), np.int32)
  mask = np.zeros((n, k, length), np.int32)
  ids[:, :, 0], ids[:, :, 1], mask[:, :, :2] = cls_id, sep_id, 1  # the padding filler
  candidate_mask = np.zeros((n, k), np.int32)
  labels = np.full((n, length) if per_token else (n,), IGNORE_LABEL if per_token else 0,
                   label_dtype)
  weights = np.zeros(n, np.float32)
  task_id = np.full(n, plan.task_ids[0], np.int32)
  example_index = np.full(n, -1, np.int32)
  for out, row in enumerate(row_ids):
    if row >= len(plan.indices):
      continue
    t, e = int(plan.task_ids[row]), int(plan.indices[row])
    f = features[t]
    first, last = f.example_offsets[e], f.example_offsets[e + 1]
    if last - first > k:
      raise ValueError(f"example {e} of task {t} has {last - first} candidates, more than the "
                       f"{k} a batch of this task holds")
    for c, s in enumerate(range(first, last)):
      start, end = f.seq_offsets[s], f.seq_offsets[s + 1]
      ids[out, c, :] = pad_id
      mask[out, c, :] = 0
      ids[out, c, :end - start] = f.input_ids[start:end]
      segments[out, c, :end - start] = f.segment_ids[start:end]
      mask[out, c, :end - start] = 1
      candidate_mask[out, c] = 1
      if per_token:
        labels[out, :end - start] = f.labels[start:end]
    if not per_token:
      labels[out] = f.labels[e]
    weights[out], task_id[out], example_index[out] = 1.0, t, e
  batch = {"labels": labels, "weights": weights, "task_id": task_id,
           "example_index": example_index}
  if candidates is None:
    batch.update(input_ids=ids[:, 0], segment_ids=segments[:, 0], attention_mask=mask[:, 0])
  else:
    batch.update(input_ids=ids, segment_ids=segments, attention_mask=mask,
                 candidate_mask=candidate_mask)
  return batch


def host_rows(global_size: int, host_index: int, host_count: int) -> slice:
  """The rows of a global batch that host `host_index` of `host_count` materialises."""
  if global_size % host_count:
    raise ValueError(f"global batch size {global_size} is not divisible by {host_count} hosts")
  if not 0 <= host_index < host_count:
    raise ValueError(f"host index {host_index} is outside [0, {host_count})")
  per_host = global_size // host_count
  return slice(host_index * per_host, (host_index + 1) * per_host)


def eval_batches(task_id: int, features: Features, buckets: Buckets, pad_id: int, cls_id: int,
                 sep_id: int, host_index: int = 0, host_count: int = 1,
                 num_candidates: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every example of one split once, bucketed, in file order within each bucket.

  `num_candidates`: for a ranking task, the K its training batches use (default: this split's
  most), so evaluation reuses the training shapes.
  """
  for bucket_size in buckets.batch_sizes:
    host_rows(bucket_size, host_index, host_count)  # fail before any work
  for plan in plan_task_batches(task_id, features, buckets, rng=None):
    rows = host_rows(buckets.batch_sizes[plan.bucket], host_index, host_count)
    yield make_batch(plan, {task_id: features}, buckets, pad_id, cls_id, sep_id, rows,
                     None if num_candidates is None else {task_id: num_candidates})
