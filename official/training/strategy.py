"""Distribution strategies by name, and who may write files."""

from __future__ import annotations

import tensorflow as tf
from absl import logging

STRATEGIES = ("mirrored", "one_device", "multi_worker_mirrored", "tpu")


def configure_cpu_devices(num_cpu_devices: int) -> None:
    """Splits the first CPU into `num_cpu_devices` logical devices (before any TF op runs).

    Two logical CPUs give MirroredStrategy two replicas on a CPU-only machine, which exercises
    the distributed code paths in tests.
    """
    if num_cpu_devices <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices
    )


def create_strategy(
    kind: str, *, num_gpus: int = -1, num_cpu_devices: int = 1, tpu: str = ""
) -> tf.distribute.Strategy:
    """Creates a strategy.

    Args:
      kind: "mirrored" (every local GPU, else every logical CPU), "one_device",
        "multi_worker_mirrored" (cluster from TF_CONFIG) or "tpu".
      num_gpus: GPUs to use; -1 for all visible ones.
      num_cpu_devices: logical CPU devices to create when there is no GPU.
      tpu: TPU address or name for TPUClusterResolver ("" for the local TPU).

    Returns:
      The strategy.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {kind!r}; choose one of {STRATEGIES}")
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    configure_cpu_devices(num_cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    if num_gpus >= 0:
        gpus = gpus[:num_gpus]
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if kind == "one_device":
        strategy = tf.distribute.OneDeviceStrategy(devices[0])
    else:
        strategy = tf.distribute.MirroredStrategy(devices)
    logging.info(
        "strategy %s over %s", kind, ", ".join(devices[:1] if kind == "one_device" else devices)
    )
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes checkpoints, summaries and exports."""
    if isinstance(strategy, tf.distribute.TPUStrategy) or not _cluster(strategy):
        return True
    # With a "chief" job the chief writes; otherwise worker 0 plays that role.
    return worker_index_and_count(strategy)[0] == 0


def _cluster(strategy: tf.distribute.Strategy) -> dict:
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver.cluster_spec().as_dict() if resolver is not None else {}


def worker_index_and_count(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this worker's index, number of workers) for sharding the input between workers.

    The chief, if the cluster has one, is worker 0 and the "worker" tasks follow, the order
    tf.distribute uses for its own InputContext.
    """
    cluster = _cluster(strategy)
    if isinstance(strategy, tf.distribute.TPUStrategy) or not cluster:
        return 0, 1
    resolver = strategy.cluster_resolver
    has_chief = "chief" in cluster
    count = len(cluster.get("worker", ())) + int(has_chief)
    if resolver.task_type == "chief":
        return 0, count
    return resolver.task_id + int(has_chief), count
