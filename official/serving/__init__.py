"""Serving: the SavedModel that TF Serving loads (saved_model.py) and TFLite (tflite.py)."""
