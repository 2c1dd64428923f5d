"""Multi-process runs (TPU pods, multi-node GPU) on JAX's own distributed runtime.

`initialize(config.distributed)` runs before anything touches a device. With an explicit
coordinator (address, process count, this process's id) it starts there; otherwise, when the
environment is a TPU pod, a SLURM job or an Open MPI launch of several processes,
`jax.distributed.initialize()` reads it from there; a single process needs nothing. Every
process then builds the same mesh over all devices, reads only its rows of each global batch,
and only process 0 writes logs, score files and plots (orbax coordinates the checkpoint).

A launch that cannot come together (a wrong process count, an unreachable coordinator, two
processes with one id) fails after `initialization_timeout` seconds with what to check, instead
of hanging. With an explicit coordinator the processes first meet on the coordinator's port + 1
(a small TCP handshake of our own): JAX's runtime, when a peer never arrives, aborts the process
from a C++ thread, where no error message of ours can be given.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import warnings

import jax
import ml_collections

from mtdnn_jax import runtime
from mtdnn_jax.errors import InputError


def default_distributed_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      coordinator_address="",  # host:port of process 0; "" = detect (TPU, SLURM, Open MPI) or single process
      num_processes=0,
      process_id=-1,
      initialization_timeout=60,  # seconds to wait for every process to join
      compilation_cache_dir="",  # persistent XLA compilation cache shared by runs ("" = off)
  ))


def detected_cluster() -> str | None:
  """The multi-process launcher the environment shows, if any."""
  env = os.environ
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in env:
    return "SLURM"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "Open MPI"
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    return "TPU pod"
  return None


def initialize(config: ml_collections.ConfigDict) -> None:
  if config.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", config.compilation_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if runtime.onednn_matmuls_requested():
      # XLA cannot serialise an executable with oneDNN fusions, and jax warns at every such
      # compile; accelerator programs are still cached.
      warnings.filterwarnings("ignore", message="Error writing persistent compilation cache "
                              "entry.*onednn")
      print("note: CPU programs with oneDNN matmuls are not kept in the compilation cache "
            f"(set {runtime.MATMULS_ENV}=xla to cache them)", file=sys.stderr)
  if jax.distributed.is_initialized():
    return
  explicit = bool(config.coordinator_address)
  cluster = None if explicit else detected_cluster()
  if not explicit and cluster is None:
    return  # one process
  if explicit:
    if config.num_processes < 1:
      raise InputError(None, "must be given (>= 1) with a coordinator address",
                       field="config.distributed.num_processes")
    if not 0 <= config.process_id < config.num_processes:
      raise InputError(None, f"{config.process_id} is not in [0, {config.num_processes})",
                       field="config.distributed.process_id")
    _rendezvous(config.coordinator_address, config.num_processes, config.process_id,
                config.initialization_timeout)
  # CPU processes exchange data over gloo (TCP); accelerators use their own interconnect.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    if explicit:
      jax.distributed.initialize(config.coordinator_address, config.num_processes,
                                 config.process_id,
                                 initialization_timeout=config.initialization_timeout)
    else:
      jax.distributed.initialize(initialization_timeout=config.initialization_timeout)
  except Exception as e:  # the runtime reports timeouts and refused connections variously
    where = (f"coordinator {config.coordinator_address} with {config.num_processes} processes"
             if explicit else f"the {cluster} environment")
    raise InputError(None, f"the processes did not come together within "
                     f"{config.initialization_timeout} s ({where}): check that the coordinator "
                     "address is reachable from every process, that exactly num_processes "
                     "processes were started, and that each has its own process_id "
                     f"[{type(e).__name__}: {str(e).splitlines()[0][:200]}]",
                     field="config.distributed") from None


def _not_together(timeout: float, detail: str) -> InputError:
  return InputError(None, f"the processes did not come together within {timeout:g} s ({detail}): "
                    "check that the coordinator address is reachable from every process, that "
                    "exactly num_processes processes were started, and that each has its own "
                    "process_id", field="config.distributed")


def _rendezvous(address: str, num_processes: int, process_id: int, timeout: float) -> None:
  """Every process checks in with process 0 on port + 1; process 0 answers when all have."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise InputError(None, f"coordinator address {address!r} is not host:port",
                     field="config.distributed.coordinator_address")
  deadline = time.monotonic() + timeout
  endpoint = (host, int(port) + 1)
  if process_id == 0:
    try:
      server = socket.create_server(("", endpoint[1]))
    except OSError as e:
      raise InputError(None, f"cannot listen on port {endpoint[1]} (the coordinator port + 1): "
                       f"{e.strerror}", field="config.distributed.coordinator_address") from None
    joined, peers = {0}, []
    with server:
      while len(joined) < num_processes:
        server.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
          peer, _ = server.accept()
        except TimeoutError:
          missing = sorted(set(range(num_processes)) - joined)
          raise _not_together(timeout, f"{len(joined)} of {num_processes} joined; missing "
                              f"process ids {missing}") from None
        claimed = int(peer.recv(16).decode() or -1)
        if claimed in joined or not 0 < claimed < num_processes:
          peer.sendall(b"no")
          raise _not_together(timeout, f"a second process claims process_id {claimed}"
                              if claimed in joined else f"process_id {claimed} is out of range")
        joined.add(claimed)
        peers.append(peer)
      for peer in peers:
        peer.sendall(b"go")
        peer.close()
    return
  while True:
    try:
      with socket.create_connection(endpoint, timeout=1.0) as connection:
        connection.sendall(str(process_id).encode())
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
          reply = connection.recv(2)
        except TimeoutError:
          reply = b""
      if reply == b"go":
        return
      raise _not_together(timeout, "process 0 refused this process_id" if reply == b"no"
                          else "process 0 is still waiting for other processes")
    except OSError:  # not listening yet (or unreachable): try again until the deadline
      if time.monotonic() > deadline:
        raise _not_together(timeout, f"cannot reach the coordinator at {host}:{endpoint[1]}") from None
      time.sleep(0.2)
