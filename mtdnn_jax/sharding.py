"""The device mesh and how parameters, optimizer state and batches are laid out on it.

Parameters carry logical axis names (vocab, embed, heads, kv, mlp, layers, tasks); the config's
`logical_axis_rules` map them onto the mesh axes ("data", "model"). Batches are split over
"data". Everything here is data: changing the layout is a config change, not a code change.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtdnn_jax.errors import InputError

MESH_AXES = ("data", "model")

# Data parallel over "data"; tensor parallel (Megatron-style: attention heads and the FFN's inner
# dimension, and the vocabulary) over "model". With model = 1 this is pure data parallelism.
DEFAULT_RULES = (
    ("vocab", "model"),
    ("embed", None),
    ("heads", "model"),
    ("kv", None),
    ("mlp", "model"),
    ("layers", None),
    ("tasks", None),
)


def make_mesh(shape: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "model") mesh; one axis may be -1 (all remaining devices)."""
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
  """NamedShardings for a tree of `nn.LogicallyPartitioned` (or plain, replicated) leaves."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, [tuple(r) for r in rules])


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Examples split over "data"; everything after the batch axis whole."""
  return NamedSharding(mesh, P("data"))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows of a batch → global arrays split over the "data" axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
