"""Our training or inference speed next to keras.applications and timm, in one run.

  python tools/benchmark_train.py --model=resnet50,mobilenet_v2 \
      --precision=float32,mixed_bfloat16,auto --torch_python=/path/to/torch/python
  python tools/benchmark_train.py --mode=infer --model=resnet50 --torch_python=...

Training sides: ours (our loop as `train` runs it, BN on the fused kernel, bfloat16 1x1
convolutions with a MatMul kernel gradient, bfloat16 residual ReLUs as an integer select, the
one-pass (XLA) swish gradient, float32 depthwise kernels wider than 3 columns with their
gradient in strips on CPUs with AVX-512, the input normalization in one XLA pass, in every
--precision; "auto" times per-layer-kind assignments on
the model and keeps the fastest),
ours_keras_bn (the same with Keras' own BN layers: --config.runtime.fused_batch_norm=false),
ours_conv_gradient (oneDNN's convolution gradient for 1x1 kernels:
--config.runtime.matmul_pointwise_gradient=false), ours_eigen_relu (TensorFlow's bfloat16 ReLU
after residual additions: --config.runtime.integer_residual_relu=false), ours_tf_swish_gradient
(tf.nn.silu's gradient: --config.runtime.short_swish_gradient=false), ours_tf_depthwise_gradient
(oneDNN's whole-kernel gradient for depthwise kernels wider than 3 columns:
--config.runtime.strip_depthwise_gradient=false), ours_keras_normalization (Keras'
subtraction and division: --config.runtime.fused_input_normalization=false),
ours_one_inter_op_thread
(TF_NUM_INTEROP_THREADS=1 instead of one inter-op thread per core), ours_without_onednn
(TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's own default on CPUs without AVX-512 VNNI/BF16 or AMX),
keras.applications trained by `fit` and by `train_on_batch`, and with --torch_python timm
(channels-last, the faster of float32 and bfloat16 autocast) as is and, when the machine has
tcmalloc, with it preloaded as PyTorch's CPU launcher does (timm_tcmalloc). Inference sides:
ours (a Keras call under tf.function), ours_folded_bn (the inference form export writes: BN
folded into the convolutions, swish written out, depthwise convolutions grouped, products on
pooled vectors as MatMul, the input normalization as one kernel), ours_serving (that form, with
oneDNN's weight cache as official.predict runs it), ours_serving_depthwise,
ours_serving_vector_conv and ours_serving_keras_normalization (the same without one of the last
three rewrites), ours_without_onednn, our exported SavedModel in a serving
process (tensors in; and JPEG bytes in, preprocessing included), keras.applications, timm and
timm_tcmalloc. Each side runs in its own process per round, the sides alternating. Prints one
JSON line per model and a Markdown table: images/s, step time, peak RSS, GFLOP/s against the
matmul peak measured at start, and our best ÷ each peer.
Logic: official/benchmark.py.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from official import benchmark, cli  # noqa: E402

_DEFAULTS = benchmark.Settings()
_MODELS = flags.DEFINE_list("model", list(_DEFAULTS.models), "Registry names to benchmark.")
_MODE = flags.DEFINE_enum("mode", _DEFAULTS.mode, benchmark.MODES, "Training or inference.")
_PRECISIONS = flags.DEFINE_list(
    "precision",
    list(_DEFAULTS.precisions),
    "Our precisions (float32, mixed_bfloat16, auto); keras.applications runs the non-auto ones.",
)
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size.")
_SIZE = flags.DEFINE_integer("image_size", _DEFAULTS.image_size, "Image side.")
_CLASSES = flags.DEFINE_integer("num_classes", _DEFAULTS.num_classes, "Classifier outputs.")
_WIDTH = flags.DEFINE_float(
    "width_multiplier", _DEFAULTS.width_multiplier, "Our width (keras MobileNets: alpha)."
)
_STEPS = flags.DEFINE_integer("steps", _DEFAULTS.steps, "Timed steps per round and side.")
_WARMUP = flags.DEFINE_integer("warmup_steps", _DEFAULTS.warmup_steps, "Untimed steps first.")
_LATENCY = flags.DEFINE_integer(
    "latency_steps", _DEFAULTS.latency_steps, "Timed batch-1 calls (inference)."
)
_ROUNDS = flags.DEFINE_integer("rounds", _DEFAULTS.rounds, "Alternating rounds.")
_TORCH = flags.DEFINE_string(
    "torch_python", _DEFAULTS.torch_python, "A Python with torch and timm: adds timm's sides."
)
_SIDES = flags.DEFINE_list(
    "sides",
    [],
    f"Only these sides (train: {', '.join(benchmark.TRAIN_SIDES)}; "
    f"infer: {', '.join(benchmark.INFER_SIDES)}); empty: all.",
)
_MATMUL = flags.DEFINE_integer(
    "matmul_size", _DEFAULTS.matmul_size, "Side of the matmul that measures the peak."
)


def main(argv):
    cli.no_arguments(argv)
    settings = benchmark.Settings(
        models=tuple(_MODELS.value),
        mode=_MODE.value,
        precisions=tuple(_PRECISIONS.value),
        batch_size=_BATCH.value,
        image_size=_SIZE.value,
        num_classes=_CLASSES.value,
        width_multiplier=_WIDTH.value,
        steps=_STEPS.value,
        warmup_steps=_WARMUP.value,
        latency_steps=_LATENCY.value,
        rounds=_ROUNDS.value,
        torch_python=_TORCH.value,
        matmul_size=_MATMUL.value,
        sides=tuple(_SIDES.value),
    )
    with cli.user_errors():
        benchmark.benchmark(
            settings,
            emit=lambda line: print(line, flush=True),
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )


if __name__ == "__main__":
    app.run(main)
