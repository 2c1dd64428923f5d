"""The device mesh and how parameters, optimizer state and batches are laid out on it.

Parameters carry logical axis names (vocab, embed, heads, kv, mlp, layers, tasks); the config's
`logical_axis_rules` map them onto the mesh axes ("data", "fsdp", "model"). Batches are split
over "data" and "fsdp" together. Everything here is data: changing the layout is a config change
(`mesh`, and `sharding_preset` or an explicit `logical_axis_rules` table), not a code change.

Presets:
  data_parallel    parameters and optimizer state replicated; batches split over the devices
  fsdp             parameters and optimizer state split over "fsdp" along the hidden size (ZeRO-3
                   style: each device holds 1/n and gathers a layer's weights when it needs them)
  tensor_parallel  attention heads, the FFN's inner dimension and the vocabulary split over
                   "model" (Megatron style); with model = 1 this is data parallelism
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtdnn_jax.errors import InputError

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the mesh axes a batch's examples are split over

PRESETS = {
    "data_parallel": (("vocab", None), ("embed", None), ("heads", None), ("kv", None),
                      ("mlp", None), ("layers", None), ("tasks", None)),
    "fsdp": (("vocab", None), ("embed", "fsdp"), ("heads", None), ("kv", None), ("mlp", None),
             ("layers", None), ("tasks", None)),
    # The vocabulary stays whole: BERT's sizes (30522) rarely divide by the model axis.
    "tensor_parallel": (("vocab", None), ("embed", None), ("heads", "model"), ("kv", None),
                        ("mlp", "model"), ("layers", None), ("tasks", None)),
}
DEFAULT_PRESET = "tensor_parallel"


def resolve_rules(preset: str, rules: Sequence[Sequence[str | None]] = ()
                  ) -> tuple[tuple[str, str | None], ...]:
  """The explicit table of (logical axis, mesh axis or None) pairs if given, else the preset's."""
  if not rules:
    if preset not in PRESETS:
      raise InputError(None, f"unknown preset {preset!r} (known: {', '.join(PRESETS)})",
                       field="config.sharding_preset")
    return PRESETS[preset]
  table = tuple((str(a), None if m is None else str(m)) for a, m in rules)
  unknown = {m for _, m in table if m is not None and m not in MESH_AXES}
  if unknown:
    raise InputError(None, f"rules name unknown mesh axes {sorted(unknown)} (axes: {MESH_AXES})",
                     field="config.logical_axis_rules")
  return table


def make_mesh(shape: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "model") mesh; one axis may be -1 (all remaining devices)."""
  devices = list(devices if devices is not None else jax.devices())
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise InputError(None, f"unknown mesh axes {sorted(unknown)} (axes: {MESH_AXES})",
                     field="config.mesh")
  sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise InputError(None, f"mesh {dict(zip(MESH_AXES, sizes))}: sizes must be positive, with "
                     "at most one -1", field="config.mesh")
  if -1 in sizes:
    known = int(np.prod([s for s in sizes if s != -1]))
    if len(devices) % known:
      raise InputError(None, f"{len(devices)} devices cannot be split into a mesh of "
                       f"{dict(zip(MESH_AXES, sizes))}", field="config.mesh")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise InputError(None, f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} "
                     f"devices, but {len(devices)} are available", field="config.mesh")
  return jax.make_mesh(tuple(sizes), MESH_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str | None]]) -> Any:
  """NamedShardings for a tree of `nn.LogicallyPartitioned` (or plain, replicated) leaves;
  InputError when a parameter cannot be split as the rules say."""
  specs = nn.get_partition_spec(boxed_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, list(rules))
  for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(nn.unbox(boxed_tree)),
                                    jax.tree.leaves(shardings)):
    try:
      sharding.shard_shape(leaf.shape)
    except ValueError:
      raise InputError(None, f"parameter {jax.tree_util.keystr(path)} of shape {leaf.shape} "
                       f"cannot be split as {sharding.spec} over mesh {dict(mesh.shape)}",
                       field="config.logical_axis_rules") from None
  return shardings


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways a batch is split."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def layout_report(mesh: Mesh, name: str, rules, trees: dict[str, Any]) -> str:
  """The chosen layout and each tree's bytes per device (for `trees` of arrays or
  ShapeDtypeStructs carrying their shardings)."""
  lines = [f"mesh {dict(mesh.shape)} over {mesh.devices.size} devices "
           f"({jax.process_count()} processes); layout {name}: "
           + (", ".join(f"{a}->{m}" for a, m in rules if m) or "everything replicated")]
  for name, tree in trees.items():
    total = per_device = 0
    for leaf in jax.tree.leaves(tree):
      size = np.dtype(leaf.dtype).itemsize
      total += int(np.prod(leaf.shape)) * size
      per_device += int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * size
    lines.append(f"  {name}: {total / 2**20:.1f} MiB in all, {per_device / 2**20:.1f} MiB per device")
  return "\n".join(lines)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Examples split over "data" and "fsdp"; everything after the batch axis whole."""
  return NamedSharding(mesh, P(BATCH_AXES))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows of a batch → global arrays split over the batch axes."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
