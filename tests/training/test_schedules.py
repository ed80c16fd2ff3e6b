import math

import pytest

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


def test_constant():
    schedule = schedules.WarmupSchedule(0.3, total_steps=100, warmup_steps=0, decay="constant")
    assert float(schedule(0)) == pytest.approx(0.3)
    assert float(schedule(99)) == pytest.approx(0.3)


def test_unknown_decay():
    with pytest.raises(ValueError, match="unknown decay 'linear'"):
        schedules.WarmupSchedule(0.1, 10, decay="linear")
