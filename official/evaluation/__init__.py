"""Evaluation of trained runs: modes, crops, dense evaluation, ensembles, metrics, reports, CAM."""
