import io

from official.progress import Progress


def test_log_lines_show_counts_eta_and_values():
    stream = io.StringIO()
    progress = Progress(10, "train", stream=stream, log_interval=0)
    progress.update(2, loss=0.5, top1=0.25)
    progress.update(10, loss=0.1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("train [") and "2/10 steps" in lines[0]
    assert "ETA" in lines[0] and "loss 0.5" in lines[0] and "top1 0.25" in lines[0]
    assert "10/10 steps" in lines[1] and "elapsed" in lines[1]


def test_log_lines_are_rate_limited():
    stream = io.StringIO()
    progress = Progress(100, stream=stream, log_interval=3600)
    for step in range(1, 100):
        progress.update(step)
    progress.update(100)
    assert len(stream.getvalue().splitlines()) == 2  # the first and the last


def test_units_are_pluralised_in_english():
    for unit, shown in (("batch", "3/4 batches"), ("image", "3/4 images"), ("step", "3/4 steps")):
        stream = io.StringIO()
        Progress(4, "eval", unit=unit, stream=stream, log_interval=0).update(3)
        assert shown in stream.getvalue()
