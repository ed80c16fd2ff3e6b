"""tf.data service: the training pipeline runs on service workers (loopback only, bounded)."""

import io
import json
import select
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import augment, convert, pipeline, preprocess, sources, tfrecord


def _write_images(tmp_path):
    for split in ("train", "validation"):
        for label in range(2):
            folder = tmp_path / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(6):
                buffer = io.BytesIO()
                Image.fromarray(np.full((20, 24, 3), 40 * label + i, np.uint8)).save(
                    buffer, format="JPEG"
                )
                (folder / f"{i}.jpg").write_bytes(buffer.getvalue())


@pytest.fixture
def images(tmp_path):
    _write_images(tmp_path)
    return sources.open_source(f"folder:{tmp_path}")


@pytest.fixture
def records(tmp_path):
    """The same images as TFRecords, one of them damaged (valid framing, broken Example)."""
    _write_images(tmp_path / "raw")
    out = tmp_path / "records"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, stream=io.StringIO())
    shard = sorted(out.glob("train-*"))[0]
    with open(shard, "rb") as f:
        kept = list(tfrecord.read_records(f))
    damaged = bytearray(kept[0])
    del damaged[10:30]
    shard.write_bytes(b"".join(tfrecord.frame(r) for r in [bytes(damaged), *kept]))
    manifest = json.loads((out / tfrecord.MANIFEST_FILE).read_text())
    manifest["shards"][shard.name].update(bytes=shard.stat().st_size, records=len(kept) + 1)
    (out / tfrecord.MANIFEST_FILE).write_text(json.dumps(manifest))
    return sources.open_source(f"tfrecord:{out}", bad_records="skip")


def _take(source, address, job, count=4):
    training = pipeline.Training(
        preprocessing=preprocess.TrainPreprocessing(),
        shuffle_buffer=100,
        augmenter=augment.build(["rotation"], {"rotation_degrees": 10.0}, seed=0),
        tf_data_service=address,
        service_job_name=job,
    )
    ds = pipeline.build_dataset(
        source,
        split="train",
        batch_size=4,
        geometry=preprocess.Geometry(16, 0.875, "bilinear"),
        training=training,
    )
    batches = list(ds.take(count).as_numpy_iterator())
    assert [images.shape for images, _ in batches] == [(4, 16, 16, 3)] * count
    assert set(np.concatenate([labels for _, labels in batches])) <= {0, 1}


@pytest.mark.timeout(120)
def test_in_process_dispatcher_and_worker(images):
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = service.WorkerServer(
        service.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%", port=0)
    )
    try:
        _take(images, dispatcher.target, "in-process")
    finally:
        worker._stop()
        dispatcher._stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(repo, *args) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "tools/tf_data_service.py", "--host=127.0.0.1", *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 90)  # a line once the server is up
    if not ready or not process.stdout.readline():
        process.kill()
        raise AssertionError(f"tools/tf_data_service.py {' '.join(args)} did not start in 90 s")
    return process


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
@pytest.mark.timeout(300)
def test_servers_started_by_the_tool_in_other_processes(repo, images, records):
    """Workers in other processes get the pipeline as a graph: TFRecords are then read by
    graph ops only (no Python function of the trainer runs there), damaged records skipped."""
    dispatcher_port, worker_port = _free_port(), _free_port()
    processes = []
    try:
        processes.append(_start(repo, "--role=dispatcher", f"--port={dispatcher_port}"))
        processes.append(
            _start(
                repo,
                "--role=worker",
                f"--port={worker_port}",
                f"--dispatcher=127.0.0.1:{dispatcher_port}",
            )
        )
        _take(images, f"grpc://127.0.0.1:{dispatcher_port}", "two-processes")
        _take(records, f"grpc://127.0.0.1:{dispatcher_port}", "tfrecords", count=8)
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
