"""Every recipe flagfile documents itself and runs (two steps on synthetic data, small images)."""

import json
import pathlib

import pytest
from absl import flags

from official import ablate
from official import config as config_lib

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
# Recipes that start from another run (VGG's protocol, arXiv 1409.1556 §3.1): the model of the
# run they start from. Their two-step runs train that run first (two steps too), so they are
# in the slow suite; the default suite parses and validates them.
PARENT_MODELS = {"vgg16_from_vgg11.flags": "vgg11", "vgg16_s384_finetune.flags": "vgg16"}


# Two-step runs are in the slow suite (the default suite's budget): the default suite parses
# and validates every recipe, and the quickstart test trains its recipe end to end.
def _two_step_params():
    for recipe in RECIPES:
        if recipe != "quickstart.flags":
            yield pytest.param(recipe, marks=[pytest.mark.slow])


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


def _recipe_config(recipe: str) -> config_lib.Config:
    """The Config `official.train` builds from the recipe (nested flagfiles read from the
    repository root, as the recipes' commands are run)."""
    argv = flags.FlagValues().read_flags_from_files([f"--flagfile={REPO / 'configs' / recipe}"])
    return ablate.parse_config([arg for arg in argv if arg.startswith("--config.")])


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_parses_and_validates(recipe, monkeypatch):
    """The configuration `official.train` would build from the recipe passes validation."""
    monkeypatch.chdir(REPO)  # Nested --flagfile paths are relative to the repository.
    config = _recipe_config(recipe)
    config_lib.validate(config)
    assert config.model.name


def test_vgg_protocol_recipes_start_from_their_runs(monkeypatch):
    """S = 384 from the S = 256 run at 10⁻³, a fixed scale S_min = S_max tested at Q = S
    (224 / 384); D from net A by position (arXiv 1409.1556 §3.1)."""
    monkeypatch.chdir(REPO)
    configs = {recipe: _recipe_config(recipe) for recipe in PARENT_MODELS}
    s384 = configs["vgg16_s384_finetune.flags"]
    assert s384.model.init_weights and s384.model.init_weights_mapping == ""
    assert s384.train.base_learning_rate == 1e-3 and s384.data.scale_jitter == (384, 384)
    assert s384.data.train_crop == "scale_jitter"
    assert round(224 / s384.data.crop_fraction) == 384
    from_a = configs["vgg16_from_vgg11.flags"]
    assert from_a.model.name == "vgg16" and from_a.model.init_weights_mapping == "vgg_net_a"


def _two_steps(run, model_dir, recipe, *extra):
    result = run(
        "official.train",
        f"--flagfile=configs/{recipe}",
        f"--model_dir={model_dir}",
        "--config.data.source=synthetic",
        "--config.data.synthetic_examples=16",
        f"--config.data.image_size={SMALL_SIZE.get(recipe, 64)}",
        "--config.model.num_classes=10",
        "--config.train.batch_size=8",
        "--config.train.epochs=1",
        "--config.train.second_stage_epochs=0",
        "--config.runtime.summary_images=0",
        "--config.runtime.log_every_steps=1",
        *EXTRA_FLAGS.get(recipe, ()),
        *extra,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("recipe", _two_step_params())
def test_recipe_runs_two_steps(run, tmp_path, recipe, monkeypatch):
    extra = ()
    if recipe in PARENT_MODELS:
        parent = tmp_path / "parent"
        _two_steps(
            run,
            parent,
            "vgg16_imagenet.flags",
            f"--config.model.name={PARENT_MODELS[recipe]}",
            "--config.data.scale_jitter=256,256",
        )
        extra = (f"--config.model.init_weights={parent}",)
    result = _two_steps(run, tmp_path / "run", recipe, *extra)
    tmp_path = tmp_path / "run"
    if recipe == "vgg16_from_vgg11.flags":
        assert "initialized 7 layers from" in result.stderr, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2
    assert metrics["loss"] == metrics["loss"]  # not NaN
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    monkeypatch.chdir(REPO)
    assert config["model"]["name"] == _recipe_config(recipe).model.name
