"""Every mistake a user can make on the command line: one line, naming it, non-zero exit."""

import pytest

QUICK = ["--config.train.epochs=0.01"]


def _error_line(result) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--modeldir=x"], "Unknown command line flag 'modeldir'. Did you mean: model_dir"),
        (
            ["--config.train.batchsize=3"],
            "--config.train.batchsize: unknown config field. Did you mean --config.train.batch_",
        ),
        (["--config.train.batch_size=abc"], "flag --config.train.batch_size=abc"),
        (["--flagfile=configs/does_not_exist.flags"], "does_not_exist.flags"),
        (["--config.data.random_flip=maybe"], "random_flip=maybe"),
    ],
)
def test_flag_errors(run, args, expected):
    line = _error_line(run("official.train", *args))
    assert expected in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--config.data.source=folder:/no/such/dir"],
            "--config.data.source=folder:/no/such/dir: no such directory",
        ),
        (["--config.data.source=imagenet"], "--config.data.source='imagenet': expected"),
        (["--config.model.name=resnet51"], "unknown model 'resnet51'"),
        (["--config.train.optimizer=adagrad"], "--config.train.optimizer='adagrad'"),
        (
            ["--config.model.name=resnet18", "--config.data.image_size=8"],
            "--config.data.image_size=8: resnet18 needs at least 32",
        ),
    ],
)
def test_config_and_data_errors(run, tmp_path, args, expected):
    result = run("official.train", f"--model_dir={tmp_path}/run", *args, *QUICK)
    assert expected in _error_line(result)
    assert not (tmp_path / "run").exists()  # Nothing half-written.


def test_folder_without_splits(run, tmp_path):
    (tmp_path / "cats").mkdir()
    result = run("official.train", f"--config.data.source=folder:{tmp_path}", *QUICK)
    assert f"expected {tmp_path}/train/<class>/ and {tmp_path}/validation/<class>/" in (
        _error_line(result)
    )


def test_unknown_positional_argument(run):
    result = run("official.train", "configs/quickstart.flags")
    assert result.returncode != 0
    assert "unexpected arguments: configs/quickstart.flags" in result.stderr
