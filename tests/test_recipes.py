"""Every recipe flagfile documents itself and runs (two steps on synthetic data, small images)."""

import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
RECIPES = sorted(
    p.name for p in (REPO / "configs").glob("*.flags") if not p.name.startswith("base_")
)
# The smallest input each recipe's model takes quickly (Inception-v3 needs 75 px).
SMALL_SIZE = {"inception_v3_imagenet.flags": 80}
# The fine-tuning recipe's frozen phase must end within the one epoch: one step each.
EXTRA_FLAGS = {"finetune.flags": ("--config.train.freeze_backbone_epochs=0.5",)}
# Full-width binary networks (16 binary layers to trace, or AlexNet's 62 M weights): their
# two-step runs are in the slow suite; tests/serving/test_packed.py trains a tiny binary net.
SLOW_RECIPES = {
    "birealnet18_imagenet.flags",
    "xnor_resnet18_imagenet.flags",
    "bwn_resnet18_imagenet.flags",
    "xnor_alexnet_imagenet.flags",
    "bwn_alexnet_imagenet.flags",
}


def _two_step_params():
    for recipe in RECIPES:
        if recipe != "quickstart.flags":
            marks = [pytest.mark.slow] if recipe in SLOW_RECIPES else []
            yield pytest.param(recipe, marks=marks)


def test_recipes_exist():
    assert {"quickstart.flags", "resnet50_imagenet.flags", "efficientnet_b0_imagenet.flags"} <= (
        set(RECIPES)
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_header_says_command_source_expectation_and_time(recipe):
    lines = (REPO / "configs" / recipe).read_text().splitlines()
    assert lines[0].startswith(f"# python -m official.train --flagfile=configs/{recipe}")
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "arXiv" in header or "Reproduces" in header
    assert "Expected:" in header and "%" in header.split("Expected:")[1]
    assert "Time:" in header or "minutes" in header


@pytest.mark.parametrize("recipe", _two_step_params())
def test_recipe_runs_two_steps(run, tmp_path, recipe):
    size = SMALL_SIZE.get(recipe, 64)
    result = run(
        "official.train",
        f"--flagfile=configs/{recipe}",
        f"--model_dir={tmp_path}",
        "--config.data.source=synthetic",
        "--config.data.synthetic_examples=16",
        f"--config.data.image_size={size}",
        "--config.model.num_classes=10",
        "--config.train.batch_size=8",
        "--config.train.epochs=1",
        "--config.train.second_stage_epochs=0",
        "--config.runtime.summary_images=0",
        "--config.runtime.log_every_steps=1",
        *EXTRA_FLAGS.get(recipe, ()),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2
    assert metrics["loss"] == metrics["loss"]  # not NaN
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    flags = [
        line
        for line in (REPO / "configs" / recipe).read_text().splitlines()
        if line.startswith("--config.model.name=")
    ]
    assert config["model"]["name"] == flags[0].split("=", 1)[1]
