"""Training: strategy, precision, optimizer/schedule, losses, checkpoints, summaries, loop."""
