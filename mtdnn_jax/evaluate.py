"""Jitted batch evaluation: predictions, scores, metrics, score files and GLUE submissions."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mtdnn_jax import tickets
from mtdnn_jax.data.batching import Buckets, eval_batches
from mtdnn_jax.data.features import Features, rejoin_windows
from mtdnn_jax.fileio import atomic_file, write_json
from mtdnn_jax.losses import MASKED, masked_logits
from mtdnn_jax.metrics import compute_metrics, entity_metrics
from mtdnn_jax.models.heads import HeadLayout
from mtdnn_jax.models.mtdnn import MTDNN
from mtdnn_jax.sharding import put_batch
from mtdnn_jax.submission import GLUE_SUBMISSION_NAMES, write_glue_submission, write_score_file
from mtdnn_jax.tasks import TaskDef, TaskType, is_test_split


class Predictions:
  """One split's model outputs, padding removed, in the split's example order.

  Sequence labelling: `predictions` and `labels` are per-word tag lists (windows of long
  sentences rejoined), and `uids` the sentences'.
  """

  def __init__(self, task: TaskDef, example_index, outputs: dict[str, np.ndarray],
               labels: np.ndarray, features: Features):
    order = np.argsort(example_index, kind="stable")
    self.example_index = example_index[order]
    self.uids = [str(features.uids[i]) for i in self.example_index]
    self.labels = labels[order]
    self.candidate_mask = None  # ranking: which of the K candidate slots are real
    if task.task_type is TaskType.SEQUENCE_LABELING:
      self.labels = self.labels.astype(np.int32)  # float32 when a regression task shares the run
      words = self.labels >= 0  # each word's first sub-word carries its tag
      gold = [[task.labels[t] for t in row[m]] for row, m in zip(self.labels, words)]
      guess = [[task.labels[t] for t in row[m]]
               for row, m in zip(outputs["token_predictions"][order], words)]
      self.uids, self.labels = rejoin_windows(self.uids, gold)
      self.predictions = rejoin_windows([str(features.uids[i]) for i in self.example_index],
                                        guess)[1]
      self.scores = None
      return
    if task.task_type is TaskType.REGRESSION:
      self.scores = outputs["scores"][order]
      self.predictions = self.scores
    elif task.task_type is TaskType.RANKING:
      self.candidate_mask = outputs["candidate_mask"][order]
      self.scores = outputs["probs"][order]  # softmax over the question's candidates
      self.predictions = self.scores.argmax(-1)
    else:
      self.scores = outputs["probs"][order][:, :task.n_class]
      self.predictions = self.scores.argmax(-1)

  def has_gold_labels(self) -> bool:
    """False for a split whose rows all carry one dummy label (GLUE test sets); labelled test
    sets (SNLI, SciTail, CoNLL) have varied labels and are scored."""
    flat = (np.array([t for s in self.labels for t in s]) if self.scores is None
            else np.asarray(self.labels).ravel())
    return len(flat) > 0 and not np.all(flat == flat[0])

  def metrics(self, task: TaskDef) -> dict[str, float]:
    if task.task_type is TaskType.SEQUENCE_LABELING:
      return entity_metrics(self.labels, self.predictions)
    return compute_metrics(task, self.predictions, self.scores, self.labels,
                           candidate_mask=self.candidate_mask)


class Evaluator:
  def __init__(self, model: MTDNN, layout: HeadLayout, mesh: Mesh, buckets: Buckets,
               special_ids: tuple[int, int, int], num_candidates: dict[int, int] | None = None,
               span_config: dict | None = None):
    self.mesh = mesh
    self.buckets = buckets
    self.special_ids = special_ids  # pad, cls, sep
    self.num_candidates = num_candidates or {}
    self.layout = layout
    self.span_config = span_config or {"n_best": 20, "max_answer_len": 30}
    self._step = jax.jit(lambda params, batch: _eval_outputs(model, params, batch))

  def predict(self, params: Any, task_id: int, task: TaskDef, features: Features) -> Predictions:
    outputs = self.raw_outputs(params, task_id, features)
    return Predictions(task, outputs["example_index"], outputs, outputs["labels"], features)

  def raw_outputs(self, params: Any, task_id: int, features: Features) -> dict[str, np.ndarray]:
    """Every real example's outputs once (padding rows dropped), gathered from all processes;
    per-token arrays are right-padded to the longest bucket."""
    host_index, host_count = jax.process_index(), jax.process_count()
    collected: dict[str, list[np.ndarray]] = {}

    def fetch(outputs):
      for key, value in outputs.items():
        collected.setdefault(key, []).append(np.asarray(jax.device_get(_gather(value))))

    # One batch in flight while the previous one's outputs come back and the next is built.
    in_flight = None
    for batch in eval_batches(task_id, features, self.buckets, *self.special_ids,
                              host_index=host_index, host_count=host_count,
                              num_candidates=self.num_candidates.get(task_id)):
      outputs = self._step(params, put_batch(batch, self.mesh))
      if in_flight is not None:
        fetch(in_flight)
      in_flight = outputs
    if in_flight is not None:
      fetch(in_flight)
    merged = {k: _concatenate_padded(v) for k, v in collected.items()}
    real = merged["weights"] > 0
    return {k: v[real] for k, v in merged.items()}

  def evaluate(self, params: Any, task_id: int, task: TaskDef, split: str, features: Features,
               out_dir: str | os.PathLike | None,
               words: list[tuple[str, ...]] | None = None, span_data=None) -> dict[str, float]:
    """Metrics of a labelled split ({} for a split without gold labels), and its score file
    (and, for GLUE test splits, the submission file; for sequence labelling, the words with
    gold and predicted tags in CoNLL's layout, given each sentence's `words`) under `out_dir`."""
    if task.task_type in (TaskType.SPAN, TaskType.SPAN_YN):
      return self._evaluate_spans(params, task_id, task, split, features, out_dir, *span_data)
    predictions = self.predict(params, task_id, task, features)
    labelled = not is_test_split(split) or predictions.has_gold_labels()
    metrics = predictions.metrics(task) if labelled else {}
    if out_dir is not None and jax.process_index() == 0:
      out_dir = Path(out_dir)
      if task.task_type is TaskType.SEQUENCE_LABELING:
        write_tagged_words(out_dir / f"{task.name}_{split}_predictions.conll", predictions, words)
        write_json(out_dir / f"{task.name}_{split}_scores.json",
                   {"metrics": metrics, "uids": predictions.uids,
                    "predictions": predictions.predictions})
        return metrics
      write_score_file(out_dir / f"{task.name}_{split}_scores.json", task=task,
                       uids=predictions.uids, predictions=predictions.predictions,
                       scores=predictions.scores, metrics=metrics)
      submission = GLUE_SUBMISSION_NAMES.get((task.name, split))
      if submission:
        write_glue_submission(out_dir / "glue" / submission, task=task, uids=predictions.uids,
                              predictions=predictions.predictions, scores=predictions.scores)
    return metrics


  def _evaluate_spans(self, params, task_id, task, split, features, out_dir, windows, examples):
    """SQuAD: the best span of every example over its windows; v2 tunes its no-answer threshold
    on the split itself (as the official script does on dev)."""
    from mtdnn_jax import squad_eval
    outputs = self.raw_outputs(params, task_id, features)
    order = np.argsort(outputs["example_index"], kind="stable")
    logits = outputs["span_logits"][order]  # [n_windows, L, 2], windows in order
    length = windows.input_ids.shape[1]
    start, end = _pad_to(logits[..., 0], length), _pad_to(logits[..., 1], length)
    version = "2.0" if task.task_type is TaskType.SPAN_YN else "1.1"
    config = self.span_config
    decode = lambda threshold: squad_eval.postprocess(
        windows, start, end, examples, config["n_best"], config["max_answer_len"], version,
        threshold)
    predictions, _, null_diffs = decode(float("inf") if version == "2.0" else 0.0)
    labelled = any(e.answers or e.is_impossible for e in examples)
    metrics: dict[str, float] = {}
    if version == "2.0" and labelled:
      threshold = squad_eval.best_null_threshold(null_diffs, examples, predictions)["best_f1_thresh"]
      predictions = decode(threshold)[0]
      metrics["null_threshold"] = float(threshold)
    if labelled:
      metrics = {**_span_metrics(examples, predictions), **metrics}
    if out_dir is not None and jax.process_index() == 0:
      squad_eval.write_predictions(Path(out_dir) / f"{task.name}_{split}_predictions.json",
                                   predictions)
    return metrics

def _span_metrics(examples, predictions) -> dict[str, float]:
  from mtdnn_jax import squad_eval
  scores = squad_eval.evaluate(examples, predictions)
  return {"EM": scores["exact"], "F1": scores["f1"],
          **{k: v for k, v in scores.items() if k.startswith(("HasAns_", "NoAns_"))
             and not k.endswith("_total")}}


def write_tagged_words(path: Path, predictions: Predictions, words) -> None:
  """CoNLL's layout: `word gold predicted` per line, a blank line after each sentence."""
  with atomic_file(path) as f:
    for sentence, gold, guess in zip(words or [], predictions.labels, predictions.predictions):
      f.writelines(f"{w} {g} {p}\n" for w, g, p in zip(sentence, gold, guess))
      f.write("\n")


def _concatenate_padded(parts: list[np.ndarray]) -> np.ndarray:
  """Batches of different buckets, per-token arrays padded on the right to one length (-1 for
  integers, MASKED for floats)."""
  if parts[0].ndim < 2:
    return np.concatenate(parts)
  length = max(p.shape[1] for p in parts)
  fill = MASKED if parts[0].dtype.kind == "f" else -1
  return np.concatenate([np.pad(p, [(0, 0), (0, length - p.shape[1])] + [(0, 0)] * (p.ndim - 2),
                                constant_values=fill) for p in parts])


def _pad_to(array: np.ndarray, length: int) -> np.ndarray:
  return np.pad(array, [(0, 0), (0, length - array.shape[1])], constant_values=MASKED)


def _gather(x: jax.Array) -> jax.Array:
  """Every process's rows of a global array (a no-op with one process)."""
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(x, tiled=True)


def _eval_outputs(model: MTDNN, params, batch) -> dict[str, jax.Array]:
  out = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                    batch["attention_mask"], batch["task_id"], deterministic=True)
  result = {"weights": batch["weights"], "example_index": batch["example_index"],
            "labels": batch["labels"]}
  if batch["labels"].ndim == 2:  # per-token tasks: tags, or span start/end logits
    if out.token_logits is not None:
      result["token_predictions"] = jnp.argmax(out.token_logits, axis=-1)
    if out.span_logits is not None:
      result["span_logits"] = out.span_logits
    return result
  if out.logits is None:  # ranking: a softmax over each question's candidates
    result["probs"] = jax.nn.softmax(masked_logits(out.scores, batch["candidate_mask"] > 0), -1)
    result["candidate_mask"] = batch["candidate_mask"]
  else:
    result["probs"] = jax.nn.softmax(out.logits, axis=-1)
    if out.scores is not None:
      result["scores"] = out.scores
  return result


def mean_primary_metric(results: dict[tuple[str, str], dict[str, float]]) -> float:
  """The selection score: the mean over evaluated labelled splits of each one's first metric."""
  firsts = [next(iter(m.values())) for m in results.values() if m]
  firsts = [v for v in firsts if np.isfinite(v)]
  return float(np.mean(firsts)) if firsts else float("-inf")





class TrainedRun:
  """A scripts/train.py workdir opened for inference: its config, tasks, model and parameters."""

  def __init__(self, workdir: str | os.PathLike, which: str = "best"):
    import json

    import ml_collections

    from mtdnn_jax.checkpoint import Checkpoints
    from mtdnn_jax.errors import InputError
    from mtdnn_jax.model_dir import load_model_dir
    from mtdnn_jax.models.heads import head_layout
    from mtdnn_jax.pretrained import resolve_model_dir
    from mtdnn_jax.sharding import make_mesh
    from mtdnn_jax.train import DTYPES, selected_tasks

    self.workdir = Path(workdir)
    config_path = self.workdir / "config.json"
    if not config_path.is_file():
      raise InputError(config_path, "not a training workdir (no config.json)")
    self.config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    self.tasks = selected_tasks(self.config)
    model_dir = load_model_dir(resolve_model_dir(self.config.model_dir))
    self.tokenizer = model_dir.tokenizer()
    self.layout = head_layout(self.tasks)
    self.model = MTDNN(model_dir.config, self.layout, DTYPES[self.config.model.dtype],
                       self.config.model.attention_impl,
                       unroll_layers=self.config.model.get("unroll_layers", True))
    checkpoints = Checkpoints(self.workdir, asynchronous=False)
    self.step, self.params = checkpoints.restore_params(which)
    checkpoints.close()
    # A run trained under a super ticket is evaluated under it, each task with its own masks.
    self.ticket = tickets.load_for_run(self.config, [t.name for t in self.tasks], model_dir.config,
                               self.workdir)
    self._mesh = make_mesh({"data": -1, "model": 1})

  def task_id(self, name: str) -> int:
    from mtdnn_jax.errors import InputError
    names = [t.name for t in self.tasks]
    if name not in names:
      raise InputError(None, f"the run {self.workdir} has no task {name!r} (its tasks: "
                       f"{', '.join(names)})", field="--task")
    return names.index(name)

  def predict(self, task_name: str, features: Features) -> Predictions:
    task_id = self.task_id(task_name)
    tok = self.tokenizer
    evaluator = Evaluator(self.model, self.layout, self._mesh,
                          Buckets.make(self.config.buckets, self.config.eval_batch_size),
                          (tok.pad_id, tok.cls_id, tok.sep_id),
                          {task_id: features.max_candidates} if features.max_candidates else None)
    return evaluator.predict(tickets.under(self.ticket, self.params, task_id), task_id,
                             self.tasks[task_id], features)
