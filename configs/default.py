"""Defaults every experiment config starts from; each field is overridable on the command line.

  python scripts/train.py --config configs/default.py --workdir runs/rte \
      --config.tasks=rte --config.data_dir=data/glue

Not an experiment by itself: single-task RTE on whatever canonical files `data_dir` holds.
"""
import ml_collections

from mtdnn_jax.data.squad import default_squad_config
from mtdnn_jax.distill import default_distill_config
from mtdnn_jax.distributed import default_distributed_config
from mtdnn_jax.optim import default_optim_config
from mtdnn_jax.sharding import DEFAULT_PRESET
from mtdnn_jax.smart import default_smart_config
from mtdnn_jax.tickets import default_tickets_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Tasks and data. `tasks` is comma-separated; the first is the main task (sampler.mix_opt and
  # sampler.ratio treat it specially). Canonical TSVs `<task>_<split>.tsv` live in data_dir
  # (scripts/prepro.py writes them); tokenized features are cached in cache_dir.
  config.task_def = "configs/task_defs/glue.yml"
  config.tasks = "rte"
  config.data_dir = "data/glue"
  config.cache_dir = ""  # "" = <data_dir>/features
  config.train_split = "train"
  # The encoder: a model directory, or packaged:<name>.
  config.model_dir = "packaged:all-MiniLM-L6-v2"
  # Shapes: examples go to the shortest bucket that holds them; one compilation per bucket.
  config.max_seq_len = 128
  config.buckets = (32, 64, 128)
  # > 0: instead of `buckets`, this many bucket lengths fitted to the training examples' lengths
  # (the fewest padded tokens; multiples of 8 ending at max_seq_len). Printed at start.
  config.fit_buckets = 0
  config.batch_size = 32  # global, split over the mesh's data axis
  config.eval_batch_size = 64
  config.num_epochs = 3
  config.seed = 1
  config.stop_at_step = 0  # stop (with a checkpoint) after this step, e.g. for a time slot; 0 = run to the end
  config.log_every_steps = 20
  config.sampler = ml_collections.ConfigDict(dict(
      mix_opt=0,  # 0: all tasks' batches shuffled together; 1: main task's batches last
      ratio=0.0,  # > 0: all main-task batches + at most ratio x as many auxiliary ones
      mixed=False,  # one batch holds examples of several tasks
  ))
  config.model = ml_collections.ConfigDict(dict(
      dtype="float32",  # compute dtype: float32 or bfloat16 (parameters stay float32)
      attention_impl="xla",  # xla, or cudnn (GPU, bfloat16)
      remat=False,  # recompute layer activations in the backward pass (less memory)
      unroll_layers=True,  # faster steps, longer compiles (False: a loop over stacked layers)
  ))
  config.optim = default_optim_config()
  config.smart = default_smart_config()  # adversarial regularisation and Bregman proximal point
  config.distill = default_distill_config()  # knowledge distillation from soft labels
  config.squad = default_squad_config()  # span tasks: context windows and answer decoding
  config.tickets = default_tickets_config()  # super tickets: train under per-task pruning masks
  # Devices: mesh axes data × fsdp × model (-1: all remaining devices); parameters are laid out
  # by a preset (data_parallel, fsdp, tensor_parallel), or by an explicit table of
  # (logical axis, mesh axis or None) pairs in logical_axis_rules when that is not empty.
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  config.sharding_preset = DEFAULT_PRESET
  config.logical_axis_rules = ()
  config.distributed = default_distributed_config()  # multi-process: coordinator, process id
  config.checkpoint = ml_collections.ConfigDict(dict(
      keep=2,  # latest checkpoints kept for resuming (the best one is kept separately)
      every_steps=0,  # also checkpoint every N steps; 0 = at epoch ends only
      asynchronous=True,
  ))
  return config
