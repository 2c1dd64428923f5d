"""Multi-task training and evaluation: `train_and_evaluate(config, workdir)`.

One linear function in marked sections: tasks and data → mesh → model and optimizer → state
(initialised or restored) → the loop (one jitted, sharded step per batch; evaluation, checkpoint
and best-model selection after every epoch) → the plot. The config (`configs/*.py`) is the only
place a hyper-parameter lives.

The train state is a plain dict {"step", "params", "opt_state", "rng", ["ema_params"]}: the
dropout key of step s is fold_in(rng, s), so a resumed run draws exactly the bits an
uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from mtdnn_jax import distill, distributed, optim, smart, throughput, tickets
from mtdnn_jax.checkpoint import Checkpoints
from mtdnn_jax.data.batching import Buckets, fit_bucket_lengths
from mtdnn_jax.data.canonical import canonical_path, read_canonical
from mtdnn_jax.data.features import load_or_build_features
from mtdnn_jax.data.sampler import MultiTaskSampler
from mtdnn_jax.data.squad import (SPAN_END, SPAN_START, make_windows, read_squad, squad_path,
                                  windows_as_features)
from mtdnn_jax.errors import InputError
from mtdnn_jax.evaluate import Evaluator, mean_primary_metric
from mtdnn_jax.fileio import write_json
from mtdnn_jax.losses import (cross_entropy, mean_squared_error, ranking_cross_entropy,
                              token_cross_entropy, weighted_mean)
from mtdnn_jax.model_dir import load_model_dir
from mtdnn_jax.models.config import EncoderConfig
from mtdnn_jax.models.heads import KINDS, HeadLayout, head_layout
from mtdnn_jax.models.mtdnn import MTDNN
from mtdnn_jax.pretrained import resolve_model_dir
from mtdnn_jax.reporting import METRICS_FILE, MetricsLog, plot_training
from mtdnn_jax.sharding import (data_parallel_size, layout_report, logical_shardings, make_mesh,
                                put_batch, replicated, resolve_rules)
from mtdnn_jax.tasks import DataFormat, TaskDef, TaskType, load_task_defs

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# ------------------------------------------------------------------------------ the loss

def per_example_loss(outputs, batch: dict[str, jax.Array], layout: HeadLayout) -> jax.Array:
  """Each example's loss under its own task's head (SPEC.md §1 table)."""
  labels = batch["labels"]
  if labels.ndim == 2:  # per-token labels: sequence labelling, or span marks (data/squad.py)
    token_labels = labels.astype(jnp.int32)
    kind = jnp.asarray(layout.kind_code())[batch["task_id"]]
    loss = jnp.zeros(labels.shape[0], jnp.float32)
    if outputs.token_logits is not None:  # mean over each sentence's scored words
      summed, scored = token_cross_entropy(outputs.token_logits, token_labels)
      loss = jnp.where(kind == KINDS.index("tagger"), summed / jnp.maximum(scored, 1), loss)
    if outputs.span_logits is not None:  # ½ (CE of the start + CE of the end)
      start = jnp.argmax((token_labels & SPAN_START) > 0, axis=-1)
      end = jnp.argmax((token_labels & SPAN_END) > 0, axis=-1)
      span = 0.5 * (cross_entropy(outputs.span_logits[..., 0], start) +
                    cross_entropy(outputs.span_logits[..., 1], end))
      loss = jnp.where(kind == KINDS.index("span"), span, loss)
    return loss
  if outputs.logits is None:  # a ranking batch
    return ranking_cross_entropy(outputs.scores, batch["candidate_mask"], labels.astype(jnp.int32))
  # Class ids are clipped into range so that rows of regression tasks (float targets) give a
  # finite, unused cross-entropy instead of an out-of-range gather.
  class_ids = jnp.clip(labels.astype(jnp.int32), 0, layout.max_classes - 1)
  loss = cross_entropy(outputs.logits, class_ids)
  if outputs.scores is not None:
    is_scorer = jnp.asarray(layout.kind_code())[batch["task_id"]] == KINDS.index("scorer")
    loss = jnp.where(is_scorer, mean_squared_error(outputs.scores, labels), loss)
  return loss


def _keep_absent_heads(new_tree, old_tree, present: dict[str, jax.Array]):
  """Leaves under heads/<kind>/ whose task had no example in the batch keep their old value.

  A task's head must be untouched by a batch that has none of its examples, as in the
  reference, where it gets no gradient and the optimizer skips it; with optax, Adam's momentum
  would otherwise keep moving it (and decay its moments) on every other task's step.
  """
  def keep(path, new, old):
    keys = [getattr(k, "key", None) for k in path]
    if "heads" in keys and keys.index("heads") + 1 < len(keys):
      kind = keys[keys.index("heads") + 1]
      if kind in present and np.ndim(new) >= 1:
        mask = present[kind].reshape((-1,) + (1,) * (np.ndim(new) - 1))
        return jnp.where(mask, new, old)
    return new
  return jax.tree_util.tree_map_with_path(keep, new_tree, old_tree)


def make_train_step(model: MTDNN, layout: HeadLayout, tx: optax.GradientTransformation,
                    ema_decay: float, hold_absent_heads: bool,
                    smart_config: ml_collections.ConfigDict | None = None,
                    divergence: smart.PredictionDivergence | None = None,
                    distill_config: ml_collections.ConfigDict | None = None,
                    kd_divergence: smart.PredictionDivergence | None = None,
                    has_soft_labels: np.ndarray | None = None,
                    ticket: tickets.Tickets | None = None):
  adversarial = bool(smart_config and smart_config.adv_train)
  bregman = bool(smart_config and smart_config.bregman)
  distilling = has_soft_labels is not None

  def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
    dropout_rng = jax.random.fold_in(state["rng"], state["step"])

    def loss_fn(params):
      # Under a super ticket the batch's task (batches hold one task) sees the encoder through
      # its masks, so its pruned heads and neurons neither act nor receive gradient.
      masked = lambda p: tickets.under(ticket, p, batch["task_id"][0])

      def apply(perturbation=None, variables=masked(params)):
        # One dropout key for every pass of this step: SMART's clean, perturbed and teacher
        # predictions differ only by what is being compared.
        return model.apply({"params": variables}, batch["input_ids"], batch["segment_ids"],
                           batch["attention_mask"], batch["task_id"], deterministic=False,
                           rngs={"dropout": dropout_rng}, embedding_perturbation=perturbation)

      outputs = apply()
      per_example = per_example_loss(outputs, batch, layout)
      terms = {}
      if distilling:
        teachers = distill.soft_outputs(batch["soft_labels"], outputs)
        kd = kd_divergence(teachers, outputs, batch)
        kd = jnp.where(jnp.asarray(has_soft_labels)[batch["task_id"]], kd, 0.0)
        terms["distillation"] = weighted_mean(kd, batch["weights"])
        per_example = distill_config.hard_weight * per_example + distill_config.kd_weight * kd
      loss = weighted_mean(per_example, batch["weights"])
      if adversarial:
        shape = (*batch["input_ids"].reshape(-1, batch["input_ids"].shape[-1]).shape,
                 model.encoder_config.hidden_size)
        terms["smart_regularizer"], terms["smart_skipped"] = smart.smoothness_regularizer(
            apply, outputs, batch, divergence, shape, jax.random.fold_in(dropout_rng, 1),
            smart_config)
        loss = loss + smart_config.adv_alpha * terms["smart_regularizer"]
      if bregman:
        teacher = jax.lax.stop_gradient(apply(variables=masked(state["teacher_params"])))
        terms["bregman"] = weighted_mean(divergence(outputs, teacher, batch), batch["weights"])
        loss = loss + smart_config.bregman_mu * terms["bregman"]
      return loss, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    if hold_absent_heads:
      real = batch["weights"] > 0
      present = {kind: jnp.array([jnp.any(real & (batch["task_id"] == t))
                                  for t in layout.tasks_of(kind)])
                 for kind in KINDS if layout.tasks_of(kind)}
      updates = _keep_absent_heads(updates, jax.tree.map(jnp.zeros_like, updates), present)
      opt_state = _keep_absent_heads(opt_state, state["opt_state"], present)
    params = optax.apply_updates(state["params"], updates)
    new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
    if ema_decay > 0:
      new_state["ema_params"] = optim.update_ema(state["ema_params"], params, ema_decay)
    if bregman:  # θ̃ ← (1-β) θ + β θ̃
      new_state["teacher_params"] = optim.update_ema(state["teacher_params"], params,
                                                     smart_config.bregman_beta)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads),
                       "examples": jnp.sum(batch["weights"]), **terms}
  return train_step


# ------------------------------------------------------------------------------ config checks

def selected_tasks(config: ml_collections.ConfigDict) -> list[TaskDef]:
  defined = load_task_defs(config.task_def)
  names = [n.strip() for n in str(config.tasks).split(",") if n.strip()]
  if not names:
    raise InputError(None, "no task given", field="config.tasks")
  for name in names:
    if name not in defined:
      raise InputError(None, f"unknown task {name!r}; {config.task_def} defines "
                       f"{', '.join(defined)}", field="config.tasks")
  return [defined[n] for n in names]


def _words(task: TaskDef, data_dir: Path, split: str) -> list[tuple[str, ...]] | None:
  """The sentences of a sequence-labelling split, for writing predictions next to the words."""
  if task.data_format is not DataFormat.SEQUENCE:
    return None
  return [row.texts for row in read_canonical(canonical_path(data_dir, task.name, split), task)]


def check_config(config: ml_collections.ConfigDict, mesh) -> None:
  """Refuses a config that cannot run, before any compute, naming the field."""
  if config.model.dtype not in DTYPES:
    raise InputError(None, f"unknown dtype {config.model.dtype!r} (known: {', '.join(DTYPES)})",
                     field="config.model.dtype")
  if config.model.attention_impl not in ("xla", "cudnn"):
    raise InputError(None, f"unknown attention_impl {config.model.attention_impl!r} (known: "
                     "xla, cudnn)", field="config.model.attention_impl")
  data_axis = data_parallel_size(mesh)
  for name in ("batch_size", "eval_batch_size"):
    if config[name] <= 0 or config[name] % data_axis:
      raise InputError(None, f"{config[name]} is not a positive multiple of the mesh's data "
                       f"axes ({data_axis} devices)", field=f"config.{name}")
  resolve_rules(config.sharding_preset, config.logical_axis_rules)
  if list(config.buckets) != sorted(set(config.buckets)) or config.buckets[-1] < config.max_seq_len:
    raise InputError(None, f"buckets {tuple(config.buckets)} must increase and end at or above "
                     f"max_seq_len={config.max_seq_len}", field="config.buckets")
  if config.fit_buckets < 0:
    raise InputError(None, "must be 0 (use config.buckets) or a number of buckets",
                     field="config.fit_buckets")
  if config.num_epochs <= 0:
    raise InputError(None, "must be positive", field="config.num_epochs")
  optim.check_optim_config(config.optim)
  smart.check_smart_config(config.smart)
  if config.tickets.file and config.sampler.mixed:
    raise InputError(None, "a super ticket masks the encoder per task, so batches must hold one "
                     "task: set config.sampler.mixed=False", field="config.tickets.file")


# ------------------------------------------------------------------------------ the program

@dataclasses.dataclass(frozen=True)
class TrainProgram:
  """A run's model, optimizer, state layout and jitted step, independent of its data (the
  training loop and scripts/benchmark.py build the same one)."""
  model: MTDNN
  tx: optax.GradientTransformation
  ema_decay: float
  state_shardings: dict[str, Any]
  init_state: Callable  # jitted (rng, encoder params) -> sharded state
  train_step: Callable  # jitted (state, batch) -> (state, metrics); the state is donated

  def abstract_state(self, encoder_params) -> Any:
    """Shapes, dtypes and shardings of the state, for restoring a checkpoint into."""
    shapes = jax.eval_shape(self.init_state, jax.random.PRNGKey(0),
                            jax.tree.map(jnp.asarray, encoder_params))
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        shapes, self.state_shardings)

  def initial_state(self, seed: int, encoder_params) -> dict[str, Any]:
    encoder = jax.device_put(jax.tree.map(jnp.asarray, encoder_params),
                             self.state_shardings["params"]["encoder"])
    return self.init_state(jax.random.PRNGKey(seed), encoder)


def build_train_program(config: ml_collections.ConfigDict, encoder_config: EncoderConfig,
                        tasks: list[TaskDef], layout: HeadLayout, mesh, total_steps: int,
                        has_soft_labels: np.ndarray | None = None,
                        report_layout: bool = False,
                        ticket: tickets.Tickets | None = None) -> TrainProgram:
  """The model and optimizer of `config`, the state's shardings from the parameters' logical
  axis names, and the train step as one jit with explicit shardings."""
  model = MTDNN(encoder_config, layout, DTYPES[config.model.dtype],
                config.model.attention_impl, config.model.remat, config.model.unroll_layers)
  tx = optim.build_optimizer(config.optim, total_steps)
  ema_decay = float(config.optim.ema_decay)

  dummy = jnp.ones((1, config.buckets[0]), jnp.int32)
  init_params = lambda rng: model.init(rng, dummy, dummy, dummy, jnp.zeros((1,), jnp.int32))["params"]
  boxed = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  rules = resolve_rules(config.sharding_preset, config.logical_axis_rules)
  param_shardings = logical_shardings(boxed, mesh, rules)
  abstract_params = jax.tree.map(lambda b, s: jax.ShapeDtypeStruct(b.shape, b.dtype, sharding=s),
                                 nn.unbox(boxed), param_shardings)
  opt_shardings = optax.tree_utils.tree_map_params(
      tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, abstract_params),
      param_shardings, transform_non_params=lambda _: replicated(mesh))
  state_shardings = {"step": replicated(mesh), "params": param_shardings,
                     "opt_state": opt_shardings, "rng": replicated(mesh)}
  if ema_decay > 0:
    state_shardings["ema_params"] = param_shardings
  if config.smart.bregman:
    state_shardings["teacher_params"] = param_shardings
  if report_layout:
    abstract_opt = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                jax.eval_shape(tx.init, abstract_params), opt_shardings)
    print(layout_report(mesh, "custom rules" if config.logical_axis_rules
                        else config.sharding_preset, rules,
                        {"parameters": abstract_params, "optimizer state": abstract_opt}))

  def init_state(rng, encoder_params):
    params = nn.unbox(init_params(rng))
    params["encoder"] = encoder_params
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
             "rng": jax.random.fold_in(rng, 1)}
    if ema_decay > 0:
      state["ema_params"] = params
    if config.smart.bregman:
      state["teacher_params"] = params
    return state

  train_step = jax.jit(
      make_train_step(model, layout, tx, ema_decay,
                      hold_absent_heads=config.optim.grad_accumulation_steps == 1,
                      smart_config=config.smart,
                      divergence=smart.PredictionDivergence(tasks, layout),
                      distill_config=config.distill,
                      kd_divergence=smart.PredictionDivergence(tasks, layout, "kd_loss",
                                                               default="KlCriterion"),
                      has_soft_labels=has_soft_labels, ticket=ticket),
      in_shardings=(state_shardings, None), out_shardings=(state_shardings, replicated(mesh)),
      donate_argnums=0)
  return TrainProgram(model, tx, ema_decay, state_shardings,
                      jax.jit(init_state, out_shardings=state_shardings), train_step)


# ------------------------------------------------------------------------------ the run

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains on all of `config.tasks` at once, evaluating every epoch; returns the last epoch's
  metrics {"<task>/<split>/<metric>": value}, "best_score", "step" and
  "train_step_compilations"."""
  workdir = Path(workdir)
  distributed.initialize(config.distributed)
  is_writer = jax.process_index() == 0

  # --- mesh and config checks: everything that can be refused is refused before any compute
  mesh = make_mesh(dict(config.mesh))
  check_config(config, mesh)
  tasks = selected_tasks(config)
  layout = head_layout(tasks)

  # --- input: tokenized feature caches, the multi-task sampler, evaluation splits
  model_dir = load_model_dir(resolve_model_dir(config.model_dir))
  tokenizer = model_dir.tokenizer()
  data_dir = Path(config.data_dir)
  cache_dir = Path(config.cache_dir or data_dir / "features")
  span_data = {}  # (task, split) -> (windows, examples) of span tasks, for their evaluation

  def features(task, split):
    if task.data_format is DataFormat.MRC:  # SQuAD: the official JSON, windowed
      version = "2.0" if task.task_type is TaskType.SPAN_YN else "1.1"
      examples = read_squad(squad_path(data_dir, task.name, split), version)
      windows = make_windows(examples, tokenizer, config.max_seq_len, config.squad.doc_stride,
                             config.squad.max_query_len, training=split == config.train_split)
      span_data[(task.name, split)] = (windows, examples)
      return windows_as_features(windows, examples)
    return load_or_build_features(task, split, data_dir, cache_dir, tokenizer,
                                  config.max_seq_len)[0]

  def split_exists(task, split):
    if task.data_format is DataFormat.MRC:
      return squad_path(data_dir, task.name, split).is_file()
    return canonical_path(data_dir, task.name, split).is_file()

  train_features = [features(task, config.train_split) for task in tasks]
  bucket_lengths = tuple(config.buckets)
  if config.fit_buckets:
    bucket_lengths = fit_bucket_lengths(
        np.concatenate([f.example_lengths for f in train_features]), config.fit_buckets,
        config.max_seq_len)
    if is_writer:
      print(f"buckets fitted to the training lengths: {bucket_lengths}")
  eval_sets = [(t, task, split, features(task, split), _words(task, data_dir, split))
               for t, task in enumerate(tasks) for split in task.split_names
               if split != config.train_split and split_exists(task, split)]
  special_ids = (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id)
  sampler = MultiTaskSampler(
      train_features, Buckets.make(bucket_lengths, config.batch_size), seed=config.seed,
      pad_id=special_ids[0], cls_id=special_ids[1], sep_id=special_ids[2],
      mix_opt=config.sampler.mix_opt, ratio=config.sampler.ratio, mixed=config.sampler.mixed,
      host_index=jax.process_index(), host_count=jax.process_count())
  steps_per_epoch = sampler.steps_per_epoch()
  soft_tables = None
  if config.distill.soft_labels_dir:
    width = max(layout.max_classes, max(sampler.num_candidates.values(), default=1))
    soft_tables = [
        distill.soft_label_table(path, f, width) if path.is_file() else np.zeros((0, width))
        for f, path in ((f, distill.soft_label_path(config.distill.soft_labels_dir, t.name,
                                                    config.train_split))
                        for f, t in zip(train_features, tasks))]
    if not any(len(t) for t in soft_tables):
      raise InputError(config.distill.soft_labels_dir, "no soft-label file for any task (expected "
                       f"<task>_{config.train_split}_soft.json from scripts/distill.py)",
                       field="config.distill.soft_labels_dir")
  total_steps = config.num_epochs * steps_per_epoch
  ticket = tickets.load_for_run(config, [t.name for t in tasks], model_dir.config, workdir)
  if ticket is not None and is_writer:
    print(f"super ticket: {ticket.summary()}")

  # --- model, optimizer, state shardings and the jitted step
  program = build_train_program(
      config, model_dir.config, tasks, layout, mesh, total_steps,
      has_soft_labels=None if soft_tables is None else np.array([len(t) > 0 for t in soft_tables]),
      report_layout=is_writer, ticket=ticket)
  model, ema_decay, train_step = program.model, program.ema_decay, program.train_step

  # --- state: initialised, or restored with the sampler's position
  checkpoints = Checkpoints(workdir, keep=config.checkpoint.keep,
                            asynchronous=config.checkpoint.asynchronous)
  restored = checkpoints.restore_latest(program.abstract_state(model_dir.params))
  if restored is None:
    state = program.initial_state(config.seed, model_dir.params)
  else:
    _, state, sampler_position = restored
    sampler.load_state_dict(sampler_position)
  start_step = int(state["step"])

  evaluator = Evaluator(model, layout, mesh, Buckets.make(bucket_lengths, config.eval_batch_size),
                        special_ids, sampler.num_candidates,
                        {"n_best": config.squad.n_best, "max_answer_len": config.squad.max_answer_len})
  config_json = json.loads(config.to_json_best_effort())
  if is_writer:
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", config_json)
    if ticket is not None:  # the run's own copy: evaluation and predict.py read this one
      ticket.write(workdir / tickets.WORKDIR_TICKET)

  # --- the loop
  log = MetricsLog(workdir, enabled=is_writer)
  results: dict[str, Any] = {}
  stop_at = config.stop_at_step or total_steps

  def evaluate_epoch(state, step):
    """Every evaluation split: metrics logged, score files written, the best model kept."""
    epoch = step // steps_per_epoch
    params = state["ema_params"] if ema_decay > 0 else state["params"]
    evaluated = {}
    for task_id, task, split, split_features, words in eval_sets:
      metrics = evaluator.evaluate(tickets.under(ticket, params, task_id), task_id, task, split,
                                   split_features, workdir / "predictions" / f"epoch_{epoch}",
                                   words, span_data.get((task.name, split)))
      if metrics:
        evaluated[(task.name, split)] = metrics
        log.log(step, "eval", metrics, task=task.name, split=split, epoch=epoch)
        results.update({f"{task.name}/{split}/{k}": v for k, v in metrics.items()})
    score = mean_primary_metric(evaluated)
    results["best_score"] = max(score, results.get("best_score", float("-inf")))
    checkpoints.save_if_best(step, params, score, config_json)
    tqdm.write(f"epoch {epoch}: " + ", ".join(
        f"{t}/{s} " + " ".join(f"{k}={v:.2f}" for k, v in m.items())
        for (t, s), m in evaluated.items()))

  pending: list[tuple[int, dict]] = []  # device metrics, fetched only when logged (no sync per step)
  non_embedding = throughput.non_embedding_parameters(model_dir.params)
  peak_flops, peak_source = throughput.machine_peak_flops(config.model.dtype)
  if is_writer:
    print(f"MFU is measured against {peak_flops / 1e12:.2f} TFLOP/s ({peak_source})")
  pending_flops = pending_tokens = 0.0
  batches = iter(sampler)
  progress = tqdm(total=total_steps, initial=start_step, unit="step", disable=not is_writer,
                  desc="training", dynamic_ncols=True)
  last_log_time, last_log_step = time.time(), start_step
  step = start_step
  try:
    while step < min(stop_at, total_steps):
      batch = next(batches)
      global_shape = (batch["input_ids"].shape[0] * jax.process_count(),
                      *batch["input_ids"].shape[1:])
      pending_flops += throughput.train_step_flops(model_dir.config, non_embedding, global_shape)
      pending_tokens += float(np.prod(global_shape))
      if soft_tables is not None:
        distill.attach_soft_labels(batch, soft_tables)
      state, metrics = train_step(state, put_batch(batch, mesh))
      step += 1
      pending.append((step, metrics))
      progress.update(1)
      end_of_epoch = step % steps_per_epoch == 0
      if step % config.log_every_steps == 0 or end_of_epoch or step == stop_at:
        fetched = jax.device_get(pending)
        now = time.time()
        rate = sum(float(m["examples"]) for _, m in fetched) / max(now - last_log_time, 1e-9)
        for s, m in fetched:
          log.log(s, "train", {**{k: v for k, v in m.items() if k != "examples"},
                               "lr": optim.learning_rate_at(config.optim, total_steps, s - 1)},
                  epoch=(s - 1) // steps_per_epoch)
        elapsed = max(now - last_log_time, 1e-9)
        mfu = pending_flops / elapsed / peak_flops
        log.log(step, "speed", {"examples_per_s": rate, "steps_per_s": (step - last_log_step) / elapsed,
                                "tokens_per_s": pending_tokens / elapsed, "mfu": mfu})
        progress.set_postfix(loss=f"{float(fetched[-1][1]['loss']):.4f}", ex_s=f"{rate:.1f}",
                             mfu=f"{mfu:.1%}")
        pending, last_log_time, last_log_step = [], now, step
        pending_flops = pending_tokens = 0.0
      if end_of_epoch:
        evaluate_epoch(state, step)
      if end_of_epoch or step == stop_at or (config.checkpoint.every_steps and
                                             step % config.checkpoint.every_steps == 0):
        checkpoints.save(step, state, sampler.state_dict(), config_json)
    if start_step == total_steps:  # a finished run, resumed: report its final model again
      evaluate_epoch(state, step)
  finally:
    progress.close()
    checkpoints.wait()
    checkpoints.close()
    log.close()
  if is_writer and (workdir / METRICS_FILE).is_file():
    plot_training(workdir / METRICS_FILE, workdir / "training.png")
  results["step"] = step
  results["buckets"] = bucket_lengths
  # One compilation per batch shape (bucket) is the design; anything more is a bug to see.
  results["train_step_compilations"] = train_step._cache_size()
  return results
