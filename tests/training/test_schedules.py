import math

import numpy as np
import pytest
import tensorflow as tf

from official.training import schedules


def test_warmup_then_cosine():
    schedule = schedules.WarmupSchedule(1.0, total_steps=110, warmup_steps=10, decay="cosine")
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.5, abs=1e-6)
    assert float(schedule(35)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)), abs=1e-6)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(500)) == pytest.approx(0.0, abs=1e-7)


def test_cosine_to_a_floor():
    schedule = schedules.WarmupSchedule(1.0, 100, 0, "cosine", end_learning_rate=0.1)
    assert float(schedule(50)) == pytest.approx(0.55)
    assert float(schedule(100)) == pytest.approx(0.1)


def test_constant():
    schedule = schedules.WarmupSchedule(0.3, total_steps=100, warmup_steps=0, decay="constant")
    assert float(schedule(0)) == pytest.approx(0.3)
    assert float(schedule(99)) == pytest.approx(0.3)


def test_step_decay_at_boundaries():
    # ResNet: ×0.1 at epochs 30, 60, 80 (10 steps per epoch here), after 5 epochs of warmup.
    schedule = schedules.WarmupSchedule(
        0.4, 900, 50, "step", boundaries=(300, 600, 800), decay_rate=0.1
    )
    values = {s: float(schedule(s)) for s in (25, 50, 299, 300, 599, 600, 800, 899)}
    assert values[25] == pytest.approx(0.2)
    assert values[50] == values[299] == pytest.approx(0.4)
    assert values[300] == values[599] == pytest.approx(0.04)
    assert values[600] == pytest.approx(0.004)
    assert values[800] == values[899] == pytest.approx(0.0004)


def test_exponential_decay_staircase_and_smooth():
    # EfficientNet: ×0.97 every 2.4 epochs (here 100 steps per epoch → every 240 steps).
    staircase = schedules.WarmupSchedule(
        0.256, 10_000, 0, "exponential", decay_rate=0.97, decay_steps=240
    )
    assert float(staircase(239)) == pytest.approx(0.256)
    assert float(staircase(240)) == pytest.approx(0.256 * 0.97)
    assert float(staircase(1000)) == pytest.approx(0.256 * 0.97**4)
    smooth = schedules.WarmupSchedule(
        0.256, 10_000, 0, "exponential", decay_rate=0.97, decay_steps=240, staircase=False
    )
    assert float(smooth(120)) == pytest.approx(0.256 * 0.97**0.5)


def test_polynomial():
    schedule = schedules.WarmupSchedule(
        2.0, 110, 10, "polynomial", power=2.0, end_learning_rate=0.0
    )
    assert float(schedule(10)) == pytest.approx(2.0)
    assert float(schedule(60)) == pytest.approx(2.0 * 0.25)
    assert float(schedule(110)) == pytest.approx(0.0)


def test_unknown_decay():
    with pytest.raises(ValueError, match="unknown decay 'linear'"):
        schedules.WarmupSchedule(0.1, 10, decay="linear")


def test_reduce_on_plateau_and_its_state_after_a_restore(tmp_path):
    plateau = schedules.ReduceOnPlateau(factor=0.1, patience=2, min_delta=0.01, min_scale=0.02)
    # Improves, then stalls twice (→ ×0.1), improves, stalls twice again (→ ×0.1, floor).
    reductions = [plateau.update(m) for m in (0.50, 0.505, 0.50, 0.60, 0.60, 0.59)]
    assert reductions == [False, False, True, False, False, True]
    assert float(plateau.scale.numpy()) == pytest.approx(0.02)  # 0.01, floored
    assert float(plateau.best.numpy()) == pytest.approx(0.60)
    plateau.update(0.55)  # One evaluation without improvement so far.
    step = tf.Variable(123, dtype=tf.int64)
    path = tf.train.Checkpoint(plateau=plateau, step=step).write(str(tmp_path / "ckpt"))

    restored = schedules.ReduceOnPlateau(factor=0.1, patience=2, min_delta=0.01)
    restored_step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(plateau=restored, step=restored_step).read(path).assert_consumed()
    base = schedules.WarmupSchedule(0.1, 1000, 0, "plateau")
    rate = base(restored_step) * restored.scale
    assert float(rate) == pytest.approx(0.1 * 0.02)
    assert int(restored.wait.numpy()) == 1
    assert restored.update(0.55) is True  # The second stalled evaluation after the restore.
    np.testing.assert_allclose(restored.scale.numpy(), 0.002)
