"""Evaluation, serving export, TFLite and class activation maps of trained runs."""
