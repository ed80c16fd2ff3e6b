"""cnn-repro: reproductions of the classic ImageNet CNN papers in Keras 3 / TensorFlow."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

# importlib_resources: TFDS needs it to prepare a dataset (etils.epath) but does not declare it
# (tensorflow-datasets 4.9.10).
TFDS = ["tensorflow-datasets>=4.9", "importlib_resources>=5.0"]
# The LiteRT interpreter that runs exported .tflite models (tf.lite.Interpreter is deprecated in
# TensorFlow 2.21 in its favour).
TFLITE = ["ai-edge-litert>=1.0"]

setup(
    name="cnn-repro",
    version="0.1.0",
    description=(
        "Keras 3 / TensorFlow reproductions of EfficientNet, ResNet (Bag of Tricks), VGG, "
        "Inception, MobileNet and more, with data, training, evaluation and serving."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["official", "official.*"]),
    install_requires=[
        "tensorflow>=2.17",
        "keras>=3.0",
        "absl-py>=2.0",
        "ml-collections>=1.0",
        "numpy>=1.26",
        # TensorFlow >= 2.20 no longer depends on tensorboard; tf.summary needs it.
        "tensorboard>=2.17",
        "pillow>=10.0",
        "h5py>=3.10",
        # CRC32C of TFRecord framing, so converter workers need not import TensorFlow.
        "google-crc32c>=1.5",
        # The PredictionLog protos of the SavedModel export's TF Serving warm-up file.
        "tensorflow-serving-api>=2.17",
        # The trade-off tool's scatter plot (official/tradeoff.py), the ablation bar chart
        # (official/ablate.py).
        "matplotlib>=3.7",
    ],
    extras_require={
        "tfds": TFDS,
        "gpu": ["tensorflow[and-cuda]>=2.17"],
        "tflite": TFLITE,
        "test": [
            "pytest>=8.0",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",
            "ruff>=0.6",
            # Regenerates the bundled digits images in a test (tools/make_digits_dataset.py).
            "scikit-learn>=1.3",
            # Real photos (skimage.data: a cat, a coffee cup, a rocket...) to check ported
            # ImageNet weights on.
            "scikit-image>=0.22",
            # The tfds: source and .tflite evaluation are tested too.
            *TFDS,
            *TFLITE,
        ],
    },
    entry_points={
        "console_scripts": [
            "cnn-repro-train=official.train:run",
            "imagenet-to-tfrecord=official.imagenet_to_tfrecord:run",
            "cnn-repro-evaluate=official.evaluate:run",
            "cnn-repro-export=official.export:run",
            "cnn-repro-predict=official.predict:run",
            "cnn-repro-cam=official.cam:run",
            "cnn-repro-features=official.features:run",
            "cnn-repro-tradeoff=official.tradeoff:run",
            "cnn-repro-ablate=official.ablate:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
