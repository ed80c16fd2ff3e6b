"""Training: strategy, precision, optimizers, schedules, losses, EMA, checkpoints, loop."""
