"""Distribution: mirrored replicas on 2 logical CPUs equal one device; two local workers of
MultiWorkerMirroredStrategy train to identical weights and only the chief writes files."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]
REPO = TESTS.parent

# Runs in a fresh process: the logical CPUs must be configured before TensorFlow starts.
MIRRORED_VS_ONE_DEVICE = textwrap.dedent(
    """
    import numpy as np, keras, tensorflow as tf
    from official.training import strategy as strategy_lib
    strategy_lib.configure_cpu_devices(2)
    import tiny
    from official.training import loop

    images, labels = tiny.batches(num_examples=48, image_size=8, num_classes=3)
    # Synchronized BN: the statistics are those of the global batch on any number of
    # replicas, so both runs compute the same thing (per-replica BN would not). Swish with its
    # XLA-compiled gradient and the XLA-compiled input normalization, as training runs them
    # (swish_gradient.py, input_normalization.py): XLA kernels on each replica's device.
    from official.models import input_normalization, swish_gradient

    def build():
        model = tiny.tiny_cnn(
            num_classes=3, image_size=8, normalization="sync_batch", activation="silu"
        )
        assert swish_gradient.use_short_gradient(model) == 2
        assert input_normalization.use_fused_kernel(model) == 1
        return model

    keras.utils.set_random_seed(0)
    initial = build().get_weights()
    results = {}
    # One MirroredStrategy per process: a second instance's collectives could collide with the
    # first one's.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name, strategy in [
        ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
        ("mirrored", mirrored),
    ]:
        trainer = tiny.make_trainer(
            strategy, build, images, labels, batch_size=8, optimizer="sgd", rate=0.2,
            initial_weights=initial,
            objective=loop.Objective(num_classes=3, label_smoothing=0.1),
            gradients=loop.Gradients(weight_decay=1e-3, clip_gradient_norm=2.0),
        )
        totals, _ = trainer.train_steps(4)
        results[name] = ([w.numpy() for w in trainer.model.weights], totals)
        replicas = trainer.strategy.num_replicas_in_sync
        copies = trainer.strategy.experimental_local_results(trainer.model.weights[1].value)
        print(name, "replicas", replicas, "copies_equal",
              all(np.array_equal(copies[0], c) for c in copies))
    (a, ta), (b, tb) = results["one_device"], results["mirrored"]
    print("max_weight_difference", max(float(np.abs(x - y).max()) for x, y in zip(a, b)))
    print("max_weight_change", max(float(np.abs(x - y).max()) for x, y in zip(a, initial)))
    print("statistics", ta.tolist(), tb.tolist())

    # Synchronized BN with gradient accumulation (its all-reduce cannot run in a graph loop, so
    # loop.py unrolls the micro-batches). Replica r's micro-batch m of each 16 examples is
    # [8r + 4m, 8r + 4m + 4); one device accumulating over the same global micro-batches
    # ({0-3, 8-11}, then {4-7, 12-15}: same BN statistics) must reach the same weights.
    order = np.concatenate(
        [np.r_[i : i + 4, i + 8 : i + 12, i + 4 : i + 8, i + 12 : i + 16] for i in (0, 16, 32)]
    )
    accumulated = {}
    for name, strategy, data in [
        ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0"), (images[order], labels[order])),
        ("mirrored", mirrored, (images, labels)),
    ]:
        trainer = tiny.make_trainer(
            strategy, build, *data, batch_size=16, optimizer="sgd", rate=0.2,
            initial_weights=initial, gradients=loop.Gradients(accumulation_steps=2),
        )
        totals, _ = trainer.train_steps(3)
        accumulated[name] = ([w.numpy() for w in trainer.model.weights], totals)
    (a, ta), (b, tb) = accumulated["one_device"], accumulated["mirrored"]
    print("accumulated_weight_difference", max(float(np.abs(x - y).max()) for x, y in zip(a, b)))
    print("accumulated_weight_change", max(float(np.abs(x - y).max()) for x, y in zip(a, initial)))
    print("accumulated_loss", float(ta[0] / ta[3]), float(tb[0] / tb[3]), int(tb[3]))

    # Mirrored + bfloat16 + per-replica BN: two steps train; the loop keeps the replicas'
    # BN moving statistics equal (their average), as on one device.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    strategy = mirrored
    trainer = tiny.make_trainer(
        strategy, lambda: tiny.tiny_cnn(num_classes=3, image_size=8), images, labels,
        batch_size=8,
    )
    totals, _ = trainer.train_steps(2)
    print("bfloat16_mirrored_loss", float(totals[0] / totals[3]))
    bn = trainer.model.get_layer("block2_bn")
    copies = strategy.experimental_local_results(bn.moving_variance.value)
    print("bn_copies_equal", bool(np.array_equal(copies[0], copies[1])),
          bool(np.any(copies[0].numpy() != 1)))

    # precision=auto times the candidates on the mirrored model (each replica its own batch)
    # and restores the replicas' BN statistics.
    from official.training import precision
    with strategy.scope():
        model = tiny.tiny_cnn(num_classes=3, image_size=8)
    before = [v.numpy() for v in model.non_trainable_variables]
    with strategy.scope():
        tuned = precision.Precision("mixed_bfloat16", tune=True).tuned(model, batch_size=4)
    keras.mixed_precision.set_global_policy("float32")
    after = [strategy.experimental_local_results(v.value) for v in model.non_trainable_variables]
    print("auto_mirrored", tuned.chosen in precision.CANDIDATES, sorted(tuned.timings),
          all(np.array_equal(b, c) for b, copies in zip(before, after) for c in copies))
    """
)


def test_mirrored_replicas_reach_the_one_device_weights():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_VS_ONE_DEVICE],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{TESTS}", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert values["one_device"] == ["replicas", "1", "copies_equal", "True"]
    assert values["mirrored"] == ["replicas", "2", "copies_equal", "True"]
    assert float(values["max_weight_change"][0]) > 1e-2  # The runs really trained...
    assert float(values["max_weight_difference"][0]) <= 1e-5  # ...to the same weights.
    assert float(values["bfloat16_mirrored_loss"][0]) > 0
    assert values["bn_copies_equal"] == ["True", "True"]
    assert values["auto_mirrored"] == ["True", "['bfloat16',", "'float32']", "True"]
    # Synchronized BN + gradient accumulation on 2 replicas trains (3 steps of 16 examples)...
    one_device_loss, mirrored_loss, examples = values["accumulated_loss"]
    assert int(examples) == 48 and np.isfinite(float(mirrored_loss))
    assert float(values["accumulated_weight_change"][0]) > 1e-2
    # ...exactly as one device accumulating over the same micro-batches.
    assert float(values["accumulated_weight_difference"][0]) <= 1e-5
    assert abs(float(one_device_loss) - float(mirrored_loss)) <= 1e-5


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_two_local_workers_train_identically_and_only_the_chief_writes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        args = [
            sys.executable,
            str(TESTS / "tiny.py"),
            f"--model_dir={tmp_path / f'worker{index}'}",
            "--config.model.name=tiny_cnn",
            "--config.model.num_classes=4",
            "--config.data.source=synthetic",
            "--config.data.synthetic_examples=64",
            "--config.data.image_size=16",
            "--config.train.batch_size=16",
            "--config.train.epochs=2",
            "--config.train.ema_decay=0.9",
            "--config.runtime.distribution_strategy=multi_worker_mirrored",
            "--config.runtime.log_every_steps=2",
            "--config.runtime.summary_images=4",
        ]
        processes.append(
            subprocess.Popen(
                args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    fingerprints = [
        line.split("final weights fingerprint ")[1].split()[0]
        for _, err in outputs
        for line in err.splitlines()
        if "final weights fingerprint" in line
    ]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    chief, worker = tmp_path / "worker0", tmp_path / "worker1"
    assert not worker.exists()  # Worker 1 wrote nothing, not even its model dir or a lock.
    assert not (chief / "train.lock").exists()  # The chief held the run's lock, and let it go.
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["weights_fingerprint"] == fingerprints[0]
    assert (chief / "checkpoints/ckpt-8.index").exists() and (chief / "config.json").exists()
    assert list((chief / "train").glob("events.out.tfevents.*"))
    # Both workers took part: each read half the data, the global batch stayed 16.
    assert "2 replicas" in outputs[0][1]
    assert pytest.approx(metrics["epochs"]) == 2
