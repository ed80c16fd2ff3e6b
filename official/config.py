"""The experiment configuration: one tree of dataclasses, exposed as `--config.*` flags.

Every hyperparameter has exactly one field here and is read by exactly one function. A field
with a fixed set of values takes its choices from the module that implements them (`choices`).
Fields whose default means "take it from the model or the dataset" (0, "" or ()) are filled in
by `resolve()`, the only place that derives values: it also computes the scaled learning rate,
the steps per epoch and the rest once, so they are logged and saved with the run (runs.py)
instead of being written into flagfiles.

Importing this module does not import TensorFlow (entry points parse flags first); `choices`,
`validate` and `resolve` import the implementing modules when they run.
"""

import dataclasses
import math
from typing import Any

from official.data import catalog, imagefile
from official.errors import UserError


@dataclasses.dataclass
class ModelConfig:
    """Which architecture, the switches passed to its builder, and where its weights start.

    Zero/empty values mean "the registered variant's own default".
    """

    name: str = "resnet50"  # A registry name: `python -m official.models` lists them.
    num_classes: int = 0  # 0: the dataset's number of classes.
    width_multiplier: float = 0.0  # 0: the variant's width.
    dropout: float = -1.0  # < 0: the variant's dropout before the classifier.
    # Zero-init the last BN of each residual branch (Goyal et al. arXiv 1706.02677 §5.1; Bag of
    # Tricks arXiv 1812.01187 §3.1).
    zero_gamma: bool = False
    # "": the variant's activation. "selu" (Klambauer et al. arXiv 1706.02515) self-normalizes
    # only with --config.model.kernel_initializer=lecun_normal and normalization-free layers
    # (§ "Initialization"); neither is forced.
    activation: str = ""
    # "": the variant's normalization: "batch", "sync_batch", "group", "layer" or "instance"
    # (Ulyanov et al. arXiv 1607.08022: per-sample, per-channel statistics over H and W; no
    # moving statistics, so train.freeze_batch_norm and foreign BN weights do not apply).
    normalization: str = ""
    # Batch normalization between each hidden FC layer of a VGG-style head (VGG, AlexNet) and
    # its activation; those Dense layers then lose their bias.
    head_batch_norm: bool = False
    # "": the variant's (official/models/layers.py KERNEL_INITIALIZERS): he_normal,
    # he_normal_fan_out, glorot_uniform, ..., lecun_normal (for selu), normal_0.01 (N(0, 10⁻²),
    # VGG arXiv 1409.1556 §3.1).
    kernel_initializer: str = ""
    # ResNet family: 8 or 16 replace the stride of the last stage(s) by dilation (DeepLab, Chen
    # et al. arXiv 1706.05587 §3.1) for finer feature maps with the same parameters; 0: 32.
    output_stride: int = 0
    # Squeeze-excitation width as a fraction of the channels (EfficientNet: of each block's input,
    # 0.25; MobileNetV3: of the expanded channels, 0.25; ResNet family: 1/16 for SE-ResNet,
    # > 0 adds SE to a plain ResNet); 0 removes it; < 0: the variant's.
    se_ratio: float = -1.0
    # Stochastic depth / drop path (Huang et al. arXiv 1603.09382): drop rate of the last
    # residual branch, linear in depth (EfficientNet 0.2, MobileNetV2/V3 0); < 0: the variant's.
    stochastic_depth_rate: float = -1.0
    # MobileNetV1's ρ (arXiv 1704.04861 §3.3): the network is the same, its input ρ·224 px. It
    # sets data.image_size (then round(224·ρ)); giving both must agree. 0: none.
    resolution_multiplier: float = 0.0
    # How strided convolutions and poolings pad: "tf" (TensorFlow SAME) or "torch" (PyTorch's
    # symmetric k // 2); "": the family's reference. Weights from PyTorch set it (README "Start
    # from pretrained weights").
    padding: str = ""
    norm_epsilon: float = 0.0  # BN epsilon; 0: the family's reference (PyTorch weights set it).
    # Weight of each auxiliary classifier's cross-entropy (Inception: GoogLeNet 0.3, arXiv
    # 1409.4842 §5; TF-slim trains Inception-v3 with 0.4); > 0 builds the model with its
    # `aux_head`; 0: no auxiliary head.
    aux_loss_weight: float = 0.0
    # Filter pruning (Li et al. arXiv 1608.08710): the fraction of filters removed from each
    # prunable convolution, one per stage or one for all (official/models/filter_pruning.py);
    # (): none. `python -m official.prune_filters` writes a pruned run to start from (a run whose
    # init_weights is such a run inherits its fractions).
    filter_prune_fractions: tuple[float, ...] = ()
    # Start from trained weights (README "Start from pretrained weights"): a run directory of
    # this package or one of its checkpoints (`runs/x/checkpoints/ckpt-N`), a keras.applications
    # `.h5`, a PyTorch `.pth` / `.pt` (torchvision, timm, lukemelas' EfficientNet-PyTorch) or a
    # `.safetensors` file. Layers whose shapes differ (the classifier when the class count
    # changes) keep their fresh initialization. Ignored when resuming.
    init_weights: str = ""
    # "": detected from the file's contents; or "run", "keras_h5", "torch", "safetensors".
    init_weights_format: str = ""
    # Layout of PyTorch weights ("torchvision", "timm", "timm_tf" for timm's `tf_` models,
    # "lukemelas"); "": from their names (timm_tf is never detected: its names are timm's).
    init_weights_layout: str = ""
    # keras.applications constructor of an .h5 (e.g. "ResNet50"); "": the model's counterpart.
    init_keras_application: str = ""
    # How the initial weights map onto the model: "" by layer name (layers whose shapes differ
    # keep their initialization); "vgg_net_a": a deeper VGG (vgg13, vgg16, vgg19) from a run of
    # configuration A (vgg11), its first four convolutions and three FC layers by position in
    # the network, the rest random (Simonyan & Zisserman arXiv 1409.1556 §3.1;
    # official/training/transfer.py `copy_from_vgg_net_a`).
    init_weights_mapping: str = ""


@dataclasses.dataclass
class DataConfig:
    """Where the images come from and how they are prepared (official/data/)."""

    # "folder:PATH" (PATH/train/<class>/*, PATH/validation/<class>/*), "tfrecord:DIR_OR_PATTERN",
    # "tfds:NAME", or "synthetic" (random images, for benchmarks and smoke tests).
    source: str = "synthetic"
    tfds_data_dir: str = ""  # TFDS data directory; "": $TFDS_DATA_DIR or ~/tensorflow_datasets.
    tfds_manual_dir: str = ""  # Manually downloaded files (ImageNet's tars); "": TFDS's default.
    image_size: int = 0  # 0: the model's reference resolution.
    crop_fraction: float = 0.0  # Eval center-crop fraction; 0: the model's reference value.
    interpolation: str = ""  # Resize method; "": the model's reference ("bilinear", "bicubic").
    mean: tuple[float, ...] = ()  # Per-channel mean on 0..255; (): the dataset's, else the model's.
    std: tuple[float, ...] = ()  # Per-channel std on 0..255; (): the dataset's, else the model's.
    # Training crop; "": the model's reference. "inception" (random area 8-100%, aspect
    # 3/4-4/3; Szegedy et al. arXiv 1409.4842 §6), "scale_jitter" (VGG: shorter side drawn
    # from scale_jitter, then a random square crop; arXiv 1409.1556 §3.1) or "resize" (the
    # whole image resized, for tiny images such as digits).
    train_crop: str = ""
    scale_jitter: tuple[int, ...] = (256, 512)  # VGG's S range for a 224 crop (scaled with size).
    random_flip: bool = True  # Random horizontal flip in training.
    # Random vertical flip in training (independent of the horizontal one); for images without
    # an up and down (aerial, microscopy), not ImageNet.
    random_vertical_flip: bool = False
    # Brightness/contrast/saturation factors drawn from [1 - s, 1 + s] (0.4 in Bag of Tricks
    # arXiv 1812.01187 §2.1); 0: off.
    color_jitter: float = 0.0
    # Hue turned by α·180°, α drawn from [-h, h] (MXNet's hue jitter; 0.4 reads Bag of Tricks
    # §2.1's "hue ... [0.6, 1.4]" as MXNet would, official/data/preprocess.py); 0: off.
    hue_jitter: float = 0.0
    pca_lighting: float = 0.0  # σ of AlexNet's PCA lighting noise (0.1 in the paper); 0: off.
    # Augmentations by name, run in a fixed order (official/data/augment.py): autoaugment,
    # randaugment, rotation, cutout, random_erasing, augmix. Comma-separated is accepted.
    augment: tuple[str, ...] = ()
    randaugment_num_ops: int = 2  # N of RandAugment (arXiv 1909.13719).
    randaugment_magnitude: float = 9.0  # M of RandAugment (tensorflow/tpu scale, 10 = max).
    cutout_fraction: float = 0.5  # Cutout square side / shorter image side (arXiv 1708.04552).
    erasing_probability: float = 0.5  # Random erasing probability p (arXiv 1708.04896).
    rotation_degrees: float = 10.0  # Largest angle of the `rotation` augmentation.
    # > 0: apply `augment` only to classes with fewer training examples than this fraction
    # of the largest class; 0: to every class.
    rare_class_fraction: float = 0.0
    mixup_alpha: float = 0.0  # α of mixup's Beta(α, α) (arXiv 1710.09412; 0.2 for ImageNet).
    cutmix_alpha: float = 0.0  # α of CutMix's Beta(α, α) (arXiv 1905.04899; 1.0).
    # β of RICAP's Beta(β, β) patch boundary (random image cropping and patching, arXiv
    # 1811.09030; 0.3); 0: off. Not together with mixup or CutMix.
    ricap_beta: float = 0.0
    mix_probability: float = 1.0  # Chance that a training batch is mixed.
    mix_switch_probability: float = 0.5  # With both enabled: chance of CutMix over mixup.
    # Per-class loss weights: "" (none), "inverse" (1 / n_c) or "effective_number" (Cui et
    # al. arXiv 1901.05555, with class_weight_beta).
    class_weights: str = ""
    class_weight_beta: float = 0.999
    # Re-sample the training stream towards p_c ∝ n_c^resample_exponent: "" (off),
    # "oversample" (repeat examples of rare classes) or "undersample" (drop examples of
    # frequent ones). Exponent 0: class-balanced; 0.5: square-root sampling.
    resample: str = ""
    resample_exponent: float = 0.0
    shuffle_buffer: int = 10_000  # Examples in the training shuffle buffer.
    cache: bool = False  # Cache encoded images in memory after the first epoch (small datasets).
    # Same batches on every run (with runtime.seed); slower. Implied by runtime.deterministic.
    deterministic: bool = False
    # "grpc://HOST:PORT" of a tf.data service dispatcher whose workers run the training input
    # pipeline (README "Input-pipeline speed"); "": run it in this process.
    tf_data_service: str = ""
    synthetic_examples: int = 1024  # Examples per epoch of the synthetic source.
    # Images with more pixels (read from their header, before decoding) are refused as
    # decompression bombs: skipped and named by the folder source, an error for the serving
    # signature (and so predict) and CAM. The converter has its own --max_image_pixels.
    max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS
    # A TFRecord that is not a well-formed Example: "skip" it (named in the log, counted in
    # metrics.json) or "fail" with one line naming its shard and index. Evaluation always fails.
    bad_records: str = "skip"


@dataclasses.dataclass
class TrainConfig:
    """Optimization: optimizer, learning-rate schedule, losses, EMA, distillation, stages."""

    batch_size: int = 256  # Global batch size (one optimizer step), split across replicas.
    epochs: float = 90.0
    # "sgd" (momentum, optional Nesterov), "rmsprop" (TensorFlow 1 semantics: epsilon inside the
    # square root, mean square starting at 1, as the EfficientNet recipe), "adam", "adamw"
    # (decoupled weight decay), "lars" (You et al. arXiv 1708.03888), "lamb" (You et al.
    # arXiv 1904.00962), "adagrad" (Duchi et al. 2011), "adadelta" (Zeiler arXiv 1212.5701),
    # "adabound" or "amsbound" (Luo et al. arXiv 1902.09843: Adam, or AMSGrad, whose rate is
    # clipped to bounds that close on final_learning_rate). README "Optimization" says how each
    # one applies weight_decay.
    optimizer: str = "sgd"
    momentum: float = 0.9  # sgd, rmsprop, lars.
    nesterov: bool = False  # sgd, lars.
    rmsprop_decay: float = 0.9  # Decay of rmsprop's mean square (rho).
    beta_1: float = 0.9  # adam, adamw, lamb, adabound, amsbound.
    beta_2: float = 0.999  # adam, adamw, lamb, adabound, amsbound.
    # 0: the optimizer's (rmsprop 1e-3, adam/adamw/adabound/amsbound 1e-8, lamb/adadelta 1e-6,
    # adagrad 1e-7).
    epsilon: float = 0.0
    lars_trust_coefficient: float = 0.001  # η of arXiv 1708.03888 Algorithm 1.
    # adagrad: where the sum of squared gradients starts (TensorFlow's and Keras' 0.1; PyTorch,
    # whose Adagrad the AdaBound paper compares with, starts at 0).
    adagrad_initial_accumulator: float = 0.1
    adadelta_decay: float = 0.95  # ρ of adadelta's running averages (arXiv 1212.5701 §4).
    # adabound, amsbound: the SGD rate both bounds close on, per 256 images like
    # base_learning_rate and scaled by the schedule as it is (the reference code's
    # final_lr · lr / base_lr). The reference CIFAR-10 demo (batch 128: lr 1e-3, final_lr 0.1)
    # is base_learning_rate 0.002 with final_learning_rate 0.2 here.
    final_learning_rate: float = 0.1
    # adabound, amsbound: γ, how fast the bounds close: [final (1 − 1/(γt + 1)), final (1 +
    # 1/(γt))] at step t (arXiv 1902.09843 §4; reference code default 1e-3); 0: unbounded (Adam).
    bound_gamma: float = 1e-3
    # Learning rate per 256 images; the run uses base × batch_size / 256 (linear scaling rule,
    # Goyal et al. arXiv 1706.02677 §2.1).
    base_learning_rate: float = 0.1
    # After warmup: "cosine" (Loshchilov & Hutter arXiv 1608.03983), "constant", "step" (× decay
    # rate at each of lr_decay_epochs), "exponential" (× decay rate every lr_decay_every_epochs),
    # "polynomial" (to min_learning_rate with power lr_power) or "plateau" (× decay rate when the
    # validation top-1 stops improving, as VGG: Simonyan & Zisserman arXiv 1409.1556 §3.1).
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0  # Linear warmup from 0 (arXiv 1706.02677 §2.2).
    lr_decay_epochs: tuple[float, ...] = ()  # "step": epochs at which the rate is multiplied.
    lr_decay_rate: float = 0.0  # 0: the schedule's (step/plateau 0.1, exponential 0.97).
    lr_decay_every_epochs: float = 2.4  # "exponential" (EfficientNet: 0.97 every 2.4 epochs).
    lr_staircase: bool = True  # "exponential": decay in whole intervals.
    lr_power: float = 2.0  # "polynomial" (arXiv 1708.03888 uses 2).
    min_learning_rate: float = 0.0  # End of cosine/polynomial; floor of plateau.
    plateau_patience: int = 2  # "plateau": evaluations without improvement before decaying.
    plateau_min_delta: float = 1e-3  # "plateau": top-1 gain that counts as an improvement.
    weight_decay: float = 1e-4  # README "Optimization": its meaning for each optimizer.
    # Exclude biases and normalization scales/shifts from weight decay (Bag of Tricks arXiv
    # 1812.01187 §3.1 "no bias decay"); false: decay every variable.
    no_bias_decay: bool = True
    clip_gradient_norm: float = 0.0  # Clip the global gradient norm to this; 0: no clipping.
    # Split each replica's batch into this many micro-batches whose gradients are summed before
    # one optimizer step (same effective batch, less activation memory).
    gradient_accumulation_steps: int = 1
    label_smoothing: float = 0.0  # ε of label smoothing; 0: off.
    # How ε is spread (official/training/losses.py): "all_classes" (ε/K on every class, the true
    # one keeping 1 − ε + ε/K; Szegedy et al. arXiv 1512.00567 §7) or "wrong_classes" (1 − ε on
    # the true class, ε/(K − 1) on each other one; Bag of Tricks arXiv 1812.01187 §5.2).
    label_smoothing_formula: str = "all_classes"
    # Exponential moving average of the weights, used for evaluation and export (e.g. 0.9999 as
    # the EfficientNet recipe, Tan & Le arXiv 1905.11946 §5); 0: off.
    ema_decay: float = 0.0
    # Knowledge distillation (Hinton et al. arXiv 1503.02531; Bag of Tricks §5.3). The teacher is
    # a run directory or checkpoint of this package (its config.json names the architecture), a
    # checkpoint of the registry model `distill_teacher`, or a SavedModel directory.
    distill_checkpoint: str = ""  # "": no distillation.
    distill_teacher: str = ""  # Registry name, for a checkpoint without a run's config.json.
    distill_temperature: float = 1.0  # T of the softened distributions.
    distill_weight: float = 1.0  # Weight of the T²-scaled distillation term.
    # Transfer learning: train only the classifier (backbone BN in inference mode) for this many
    # epochs, then everything.
    freeze_backbone_epochs: float = 0.0
    backbone_lr_multiplier: float = 1.0  # The backbone's learning rate relative to the head's.
    # Keep the backbone's BN layers in inference mode (pretrained statistics, frozen scale and
    # shift) for the whole run: fine-tuning with small batches (Keras' transfer-learning guide;
    # Detectron's FrozenBatchNorm).
    freeze_batch_norm: bool = False
    # Retrain only the later network stages: the layers of the first N (name prefixes in graph
    # order: ResNet conv1, conv2, ...; VGG block1, ...; official/training/transfer.py `stages`)
    # are frozen for the whole run, their BN in inference mode (Yosinski et al. arXiv 1411.1792
    # §2: the first n layers copied and frozen). 0: none.
    freeze_stages: int = 0
    # Two stages in one run: the last `second_stage_epochs` use `second_stage_optimizer` with its
    # own rate (e.g. Adam first, then SGD to fine-tune; Keskar & Socher arXiv 1712.07628).
    second_stage_epochs: float = 0.0
    second_stage_optimizer: str = "sgd"
    second_stage_base_learning_rate: float = 0.0  # Per 256 images; required with a 2nd stage.
    eval_batch_size: int = 0  # 0: batch_size.


@dataclasses.dataclass
class PruneConfig:
    """Magnitude pruning during training (Zhu & Gupta arXiv 1710.01878; training/pruning.py).

    The sparsity of each pruned kernel rises from initial_sparsity at begin_epochs to
    target_sparsity at end_epochs along s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ (§3),
    the masks being recomputed every frequency_steps; after end_epochs they stay fixed.
    """

    target_sparsity: float = 0.0  # s_f, the fraction of zero weights at the end; 0: off.
    initial_sparsity: float = 0.0  # s_i, at the first pruning step.
    begin_epochs: float = 0.0  # t0.
    end_epochs: float = 0.0  # t0 + nΔt; 0: train.epochs (leave some epochs to recover).
    frequency_steps: int = 100  # Δt, steps between mask updates (tfmot's default).
    # Kernels to prune (training/pruning.py KINDS): "conv" (every Conv2D but the first, and
    # pointwise kernels), "dense", "first_conv", "depthwise". Comma-separated is accepted.
    layers: tuple[str, ...] = ("conv", "dense")


@dataclasses.dataclass
class RuntimeConfig:
    """Devices, precision, logging, evaluation and checkpoints."""

    # "mirrored" (all local GPUs, or the CPU), "one_device", "multi_worker_mirrored" (cluster
    # from TF_CONFIG), "tpu".
    distribution_strategy: str = "mirrored"
    num_gpus: int = -1  # -1: every visible GPU.
    # Split the CPU into this many logical devices (> 1 lets mirrored run several replicas
    # on a CPU-only machine, e.g. to test distribution).
    num_cpu_devices: int = 1
    tpu: str = ""  # "tpu": TPU name or address; "": the local TPU.
    # "float32", "mixed_bfloat16", "mixed_float16" (with dynamic loss scaling), or "auto"
    # (float16 on GPUs of compute capability >= 7.0, bfloat16 on TPUs; on CPUs with
    # AVX512_BF16 or AMX the per-layer-kind assignment a start-up timing of the model finds
    # fastest, e.g. float32 depthwise convolutions: official/training/precision.py; else
    # float32).
    precision: str = "float32"
    seed: int = 0
    deterministic: bool = False  # Deterministic kernels (bit-exact reruns; may be slower).
    log_every_steps: int = 10  # Progress bar, console and TensorBoard scalars.
    checkpoint_every_steps: int = 0  # 0: at the end of every epoch only.
    keep_checkpoints: int = 3  # The last K; the best one is kept apart in checkpoints/best.
    checkpoint_input: bool = True  # Save the input pipeline's position in checkpoints.
    eval_every_epochs: int = 1  # 0: only after the last step.
    summary_images: int = 16  # Augmented training images in the TensorBoard grid; 0: none.
    profile_steps: tuple[int, ...] = ()  # (first, last) step of a profiler trace; (): none.
    # BatchNormalization layers of the model (and its EMA copy) run TensorFlow's
    # FusedBatchNormV3 kernel on 4-D inputs, with Keras' statistics update
    # (official/models/batch_norm.py); checkpoints are the same either way. On by default:
    # with oneDNN it trained MobileNetV2 at 1.43x, EfficientNet-B0 at 1.29x, ResNet-50 at
    # 1.15x and Inception-v3 at 1.07x the speed of Keras' own layers (README "Speed").
    fused_batch_norm: bool = True
    # 1x1 convolutions computing in bfloat16 take their kernel gradient from one MatMul
    # instead of oneDNN's backward-weights convolution (official/models/pointwise.py); the
    # same layers and checkpoints. On by default: ResNet-50 trained 1.15x faster in bfloat16
    # on an AMX CPU (README "Speed"); float32 layers are unaffected.
    matmul_pointwise_gradient: bool = True
    # ReLUs after a residual addition computing in bfloat16 select on the bits read as int16
    # instead of running Eigen's bfloat16 ReLU (official/models/residual_relu.py); the same
    # results, layers and checkpoints. On by default: ResNet-50 trained faster in bfloat16 on
    # an AMX CPU (README "Speed"); float32 layers are unaffected.
    integer_residual_relu: bool = True
    # Swish (silu) layers take their gradient in one element-wise pass that XLA compiles
    # instead of tf.nn.silu's six Eigen passes (official/models/swish_gradient.py); the same
    # function, layers and checkpoints. On by default: EfficientNet-B0 trained 7-19 % faster
    # in float32 on an AVX2 CPU than with the four-pass gradient this replaced, which was in
    # turn ~5 % faster than tf.nn.silu's on an AMX CPU (README "Speed").
    short_swish_gradient: bool = True
    # Float32 and bfloat16 stride-1 depthwise convolutions wider than three columns take their
    # kernel gradient in strips of at most three columns, where oneDNN's backward-weights kernel
    # is fast (official/models/depthwise_gradient.py); the same layers and checkpoints. On by
    # default, on CPUs with AVX-512: EfficientNet-B0 (5x5 kernels) trained 2-4 % faster in
    # float32 on an AMX CPU (README "Speed"); a bfloat16 5x5 kernel gradient took a tenth of
    # the time. Without AVX-512 oneDNN's whole-kernel gradient is the faster and is kept.
    strip_depthwise_gradient: bool = True
    # The input normalization, (x - mean) / std, runs as one element-wise pass that XLA
    # compiles instead of TensorFlow's subtraction and division over the whole batch
    # (official/models/input_normalization.py); the same values bit for bit. On by default:
    # MobileNetV2 and EfficientNet-B0 trained 1-2 % faster in float32 on an AVX2 CPU (README
    # "Speed").
    fused_input_normalization: bool = True


@dataclasses.dataclass
class Config:
    """The whole experiment."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prune: PruneConfig = dataclasses.field(default_factory=PruneConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass
class Derived:
    """Values computed once from the config, the model and the dataset; logged and saved."""

    num_classes: int
    num_train_examples: int
    num_eval_examples: int
    learning_rate: float  # base_learning_rate × batch_size / 256.
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_batch_size: int
    lr_decay_steps: tuple[int, ...] = ()  # "step" schedule boundaries.
    lr_decay_interval_steps: float = 0.0  # "exponential": steps per decay interval.
    freeze_backbone_steps: int = 0  # Steps that train only the classifier.
    second_stage_step: int = 0  # First step of the second stage; 0: one stage.
    second_stage_learning_rate: float = 0.0  # second_stage_base_learning_rate × batch / 256.
    second_stage_epsilon: float = 0.0  # The second optimizer's own epsilon.
    prune_begin_step: int = 0  # First mask update (prune.begin_epochs).
    prune_end_step: int = 0  # Last mask update, where prune.target_sparsity is reached.
    # What runtime.precision resolved to: a policy, or "auto: <candidate>" once "auto" timed
    # the model (official/training/precision.py); a resumed run keeps that choice.
    precision: str = ""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work; the message names the flag and what is expected."""


def choices() -> dict[str, tuple[str, ...]]:
    """The valid values of every field with a fixed set of them, from the implementing module.

    Data fields may also be "" (the model's reference, or off).
    """
    from official.data import balance, example_reader, preprocess
    from official.models import layers, torch_port
    from official.training import losses, optimizers, precision, schedules, strategy, transfer

    return {
        "data.train_crop": preprocess.TRAIN_CROPS,
        "data.interpolation": preprocess.INTERPOLATIONS,
        "data.class_weights": balance.WEIGHTINGS,
        "data.resample": balance.RESAMPLINGS,
        "data.bad_records": example_reader.BAD_RECORDS,
        "train.optimizer": optimizers.OPTIMIZERS,
        "train.second_stage_optimizer": optimizers.OPTIMIZERS,
        "train.lr_schedule": schedules.SCHEDULES,
        "train.label_smoothing_formula": losses.LABEL_SMOOTHING_FORMULAS,
        "runtime.distribution_strategy": strategy.STRATEGIES,
        "runtime.precision": precision.PRECISIONS,
        "model.padding": ("", *layers.PADDINGS),
        "model.kernel_initializer": ("", *layers.KERNEL_INITIALIZERS),
        "model.activation": ("", *layers.ACTIVATIONS),
        "model.normalization": ("", *layers.NORMALIZATIONS),
        "model.init_weights_format": ("", *transfer.WEIGHTS_FORMATS),
        "model.init_weights_layout": ("", *torch_port.LAYOUTS),
        "model.init_weights_mapping": ("", *transfer.INIT_MAPPINGS),
    }


def _check(condition: bool, flag: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"--config.{flag}={value!r}: expected {expected}")


def _validate_train(train: TrainConfig) -> None:
    _check(train.batch_size > 0, "train.batch_size", train.batch_size, "> 0")
    _check(train.epochs > 0, "train.epochs", train.epochs, "> 0")
    _check(
        0 <= train.label_smoothing < 1,
        "train.label_smoothing",
        train.label_smoothing,
        "in [0, 1)",
    )
    for name in ("momentum", "rmsprop_decay", "adadelta_decay", "beta_1", "beta_2", "ema_decay"):
        value = getattr(train, name)
        _check(0 <= value < 1, f"train.{name}", value, "in [0, 1)")
    for name in (
        "epsilon",
        "weight_decay",
        "clip_gradient_norm",
        "warmup_epochs",
        "min_learning_rate",
        "lr_decay_rate",
        "distill_weight",
        "freeze_backbone_epochs",
        "backbone_lr_multiplier",
        "second_stage_epochs",
        "second_stage_base_learning_rate",
        "plateau_min_delta",
        "adagrad_initial_accumulator",
    ):
        value = getattr(train, name)
        _check(value >= 0, f"train.{name}", value, ">= 0")
    _check(
        train.base_learning_rate > 0, "train.base_learning_rate", train.base_learning_rate, "> 0"
    )
    _check(
        train.lars_trust_coefficient > 0,
        "train.lars_trust_coefficient",
        train.lars_trust_coefficient,
        "> 0",
    )
    _check(
        train.final_learning_rate > 0,
        "train.final_learning_rate",
        train.final_learning_rate,
        "> 0 (the SGD rate AdaBound's bounds close on)",
    )
    _check(0 <= train.bound_gamma < 1, "train.bound_gamma", train.bound_gamma, "in [0, 1)")
    _check(
        train.gradient_accumulation_steps >= 1,
        "train.gradient_accumulation_steps",
        train.gradient_accumulation_steps,
        ">= 1",
    )
    if train.lr_schedule == "step":
        epochs = train.lr_decay_epochs
        _check(
            len(epochs) > 0 and all(a < b for a, b in zip((0,) + tuple(epochs), epochs)),
            "train.lr_decay_epochs",
            epochs,
            "increasing positive epochs for --config.train.lr_schedule=step, e.g. (30, 60, 80)",
        )
    _check(
        train.lr_decay_rate < 1,
        "train.lr_decay_rate",
        train.lr_decay_rate,
        "< 1 (the factor the rate is multiplied by)",
    )
    _check(
        train.lr_decay_every_epochs > 0,
        "train.lr_decay_every_epochs",
        train.lr_decay_every_epochs,
        "> 0",
    )
    _check(train.lr_power > 0, "train.lr_power", train.lr_power, "> 0")
    _check(train.plateau_patience >= 1, "train.plateau_patience", train.plateau_patience, ">= 1")
    _check(train.freeze_stages >= 0, "train.freeze_stages", train.freeze_stages, ">= 0")
    _check(
        train.distill_temperature > 0,
        "train.distill_temperature",
        train.distill_temperature,
        "> 0",
    )
    _check(
        not train.distill_teacher or bool(train.distill_checkpoint),
        "train.distill_checkpoint",
        train.distill_checkpoint,
        f"the teacher's weights for --config.train.distill_teacher={train.distill_teacher}",
    )
    for name in ("freeze_backbone_epochs", "second_stage_epochs"):
        value = getattr(train, name)
        _check(
            value < train.epochs,
            f"train.{name}",
            value,
            f"< --config.train.epochs={train.epochs}",
        )
    if train.second_stage_epochs > 0:
        _check(
            train.second_stage_base_learning_rate > 0,
            "train.second_stage_base_learning_rate",
            train.second_stage_base_learning_rate,
            "> 0 with --config.train.second_stage_epochs",
        )


def _validate_prune(prune: PruneConfig, epochs: float) -> None:
    """The pruning fields (official/training/pruning.py)."""
    from official.training import pruning

    _check(
        0 <= prune.target_sparsity < 1,
        "prune.target_sparsity",
        prune.target_sparsity,
        "in [0, 1) (0: no pruning)",
    )
    _check(
        0 <= prune.initial_sparsity <= prune.target_sparsity or not prune.target_sparsity,
        "prune.initial_sparsity",
        prune.initial_sparsity,
        f"in [0, --config.prune.target_sparsity={prune.target_sparsity}]",
    )
    end = prune.end_epochs or epochs
    _check(
        0 <= prune.begin_epochs < epochs,
        "prune.begin_epochs",
        prune.begin_epochs,
        f">= 0 and < --config.train.epochs={epochs}",
    )
    _check(
        prune.end_epochs == 0 or prune.begin_epochs <= end <= epochs,
        "prune.end_epochs",
        prune.end_epochs,
        f"in [--config.prune.begin_epochs={prune.begin_epochs}, --config.train.epochs={epochs}]"
        ", or 0 for the end of training",
    )
    _check(prune.frequency_steps >= 1, "prune.frequency_steps", prune.frequency_steps, ">= 1")
    try:
        kinds = pruning.parse_kinds(prune.layers)
    except ValueError as e:
        raise ConfigError(f"--config.prune.layers={prune.layers!r}: {e}") from None
    _check(
        bool(kinds) or not prune.target_sparsity,
        "prune.layers",
        prune.layers,
        "at least one of " + ", ".join(pruning.KINDS),
    )


def validate(config: Config) -> None:
    """Raises ConfigError, naming the flag, for values no run can use."""
    for flag, valid in choices().items():
        section, field = flag.split(".")
        value = getattr(getattr(config, section), field)
        if flag.startswith("data.") and value == "":  # "": the default (off, or the model's).
            continue
        _check(value in valid, flag, value, "one of " + ", ".join(valid))
    _validate_train(config.train)
    _validate_prune(config.prune, config.train.epochs)
    _check(config.data.image_size >= 0, "data.image_size", config.data.image_size, ">= 0")
    _check(
        0 <= config.data.crop_fraction <= 1,
        "data.crop_fraction",
        config.data.crop_fraction,
        "in (0, 1], or 0 for the model's default",
    )
    for field in ("mean", "std"):
        value = getattr(config.data, field)
        _check(len(value) in (0, 3), f"data.{field}", value, "3 values (one per channel) or ()")
    _check(all(s > 0 for s in config.data.std), "data.std", config.data.std, "positive values")
    _validate_data(config.data)
    _check(
        not (config.data.tf_data_service and config.runtime.deterministic),
        "runtime.deterministic",
        config.runtime.deterministic,
        "false with --config.data.tf_data_service (workers produce batches in any order)",
    )
    model = config.model
    _check(model.aux_loss_weight >= 0, "model.aux_loss_weight", model.aux_loss_weight, ">= 0")
    _check(model.norm_epsilon >= 0, "model.norm_epsilon", model.norm_epsilon, "> 0, or 0")
    _validate_model_switches(model, config.data, config.train)
    is_h5 = model.init_weights_format == "keras_h5" or (
        not model.init_weights_format and model.init_weights.endswith((".h5", ".hdf5"))
    )
    _check(
        not model.init_keras_application or is_h5,
        "model.init_keras_application",
        model.init_keras_application,
        "unset unless --config.model.init_weights is a keras.applications .h5 file",
    )
    for field in (
        "init_weights_format",
        "init_weights_layout",
        "init_keras_application",
        "init_weights_mapping",
    ):
        _check(
            not getattr(model, field) or model.init_weights,
            f"model.{field}",
            getattr(model, field),
            "unset without --config.model.init_weights",
        )
    runtime = config.runtime
    _check(runtime.log_every_steps > 0, "runtime.log_every_steps", runtime.log_every_steps, "> 0")
    _check(
        runtime.num_cpu_devices >= 1,
        "runtime.num_cpu_devices",
        runtime.num_cpu_devices,
        ">= 1",
    )
    _check(
        runtime.checkpoint_every_steps >= 0,
        "runtime.checkpoint_every_steps",
        runtime.checkpoint_every_steps,
        ">= 0",
    )
    _check(
        runtime.keep_checkpoints >= 1, "runtime.keep_checkpoints", runtime.keep_checkpoints, ">= 1"
    )
    _check(
        runtime.eval_every_epochs >= 0,
        "runtime.eval_every_epochs",
        runtime.eval_every_epochs,
        ">= 0",
    )
    _check(runtime.summary_images >= 0, "runtime.summary_images", runtime.summary_images, ">= 0")
    steps = runtime.profile_steps
    _check(
        not steps or (len(steps) == 2 and 0 < steps[0] <= steps[1]),
        "runtime.profile_steps",
        steps,
        "(first, last) steps with 0 < first <= last, or ()",
    )


def _validate_model_switches(model: ModelConfig, data: DataConfig, train: TrainConfig) -> None:
    """The builder switches whose values do not depend on the model (runs.model_overrides
    refuses a switch the chosen model's builder does not have)."""
    from official.models import layers, mobilenet

    _check(
        model.output_stride in (0, 8, 16, 32),
        "model.output_stride",
        model.output_stride,
        "8, 16 or 32 (0: the model's, 32)",
    )
    _check(model.se_ratio <= 1, "model.se_ratio", model.se_ratio, "in [0, 1] (< 0: the model's)")
    _check(
        model.stochastic_depth_rate < 1,
        "model.stochastic_depth_rate",
        model.stochastic_depth_rate,
        "in [0, 1) (< 0: the model's)",
    )
    _check(
        model.resolution_multiplier >= 0,
        "model.resolution_multiplier",
        model.resolution_multiplier,
        "> 0 (ρ; the input is round(224·ρ) px), or 0",
    )
    if model.resolution_multiplier and data.image_size:
        size = mobilenet.multiplied_resolution(model.resolution_multiplier)
        _check(
            data.image_size == size,
            "model.resolution_multiplier",
            model.resolution_multiplier,
            f"one that gives --config.data.image_size={data.image_size} "
            f"(it gives {size} px; set one of the two)",
        )
    per_sample = model.normalization and model.normalization not in layers.BATCH_NORMALIZATIONS
    _check(
        not (per_sample and train.freeze_batch_norm),
        "train.freeze_batch_norm",
        train.freeze_batch_norm,
        f"false with --config.model.normalization={model.normalization} (no batch "
        "normalization to freeze)",
    )
    foreign = model.init_weights_format in ("keras_h5", "torch", "safetensors") or (
        not model.init_weights_format
        and model.init_weights.endswith((".h5", ".hdf5", ".pth", ".pt", ".safetensors"))
    )
    _check(
        not (per_sample and foreign),
        "model.normalization",
        model.normalization,
        f"'' or batch with --config.model.init_weights={model.init_weights} (its BN layers "
        "have moving statistics that per-sample normalization cannot use)",
    )


def _in_range(data: DataConfig, field: str, low: float, high: float, expected: str) -> None:
    value = getattr(data, field)
    _check(low <= value <= high, f"data.{field}", value, expected)


def _validate_data(data: DataConfig) -> None:
    """The input pipeline's fields (official/data/)."""
    from official.data import augment  # Imports TensorFlow; only needed to list the names.

    try:
        augment.parse_names(data.augment)
    except ValueError as e:
        raise ConfigError(f"--config.data.augment={data.augment!r}: {e}") from None
    _check(
        len(data.scale_jitter) == 2 and 0 < data.scale_jitter[0] <= data.scale_jitter[1],
        "data.scale_jitter",
        data.scale_jitter,
        "(S_min, S_max) with 0 < S_min <= S_max",
    )
    _in_range(data, "color_jitter", 0.0, 0.999, "in [0, 1)")
    _in_range(data, "pca_lighting", 0.0, math.inf, ">= 0")
    _check(
        data.randaugment_num_ops >= 1,
        "data.randaugment_num_ops",
        data.randaugment_num_ops,
        ">= 1",
    )
    _in_range(data, "randaugment_magnitude", 0.0, math.inf, ">= 0 (10 is the top of each range)")
    _check(0 < data.cutout_fraction <= 1, "data.cutout_fraction", data.cutout_fraction, "in (0, 1]")
    _in_range(data, "erasing_probability", 0.0, 1.0, "in [0, 1]")
    _in_range(data, "rotation_degrees", 0.0, 180.0, "in [0, 180]")
    _in_range(data, "rare_class_fraction", 0.0, 1.0, "in [0, 1]")
    _check(
        not data.rare_class_fraction or data.augment,
        "data.rare_class_fraction",
        data.rare_class_fraction,
        "0 unless --config.data.augment names augmentations for the rare classes",
    )
    _in_range(data, "mixup_alpha", 0.0, math.inf, ">= 0 (0: off)")
    _in_range(data, "cutmix_alpha", 0.0, math.inf, ">= 0 (0: off)")
    _in_range(data, "ricap_beta", 0.0, math.inf, ">= 0 (0: off)")
    _check(
        not (data.ricap_beta and (data.mixup_alpha or data.cutmix_alpha)),
        "data.ricap_beta",
        data.ricap_beta,
        "0 with --config.data.mixup_alpha or --config.data.cutmix_alpha (one batch mixing)",
    )
    _in_range(data, "hue_jitter", 0.0, 1.0, "in [0, 1] (α·180° of hue, α in [-h, h])")
    _in_range(data, "mix_probability", 0.0, 1.0, "in [0, 1]")
    _in_range(data, "mix_switch_probability", 0.0, 1.0, "in [0, 1]")
    _check(
        0 <= data.class_weight_beta < 1,
        "data.class_weight_beta",
        data.class_weight_beta,
        "in [0, 1)",
    )
    _in_range(data, "resample_exponent", 0.0, 1.0, "in [0, 1] (0: balanced, 1: unchanged)")
    _check(data.shuffle_buffer >= 1, "data.shuffle_buffer", data.shuffle_buffer, ">= 1")
    _check(data.max_image_pixels >= 1, "data.max_image_pixels", data.max_image_pixels, ">= 1")
    service = data.tf_data_service
    host, _, port = service.removeprefix("grpc://").rpartition(":")
    _check(
        not service or (service.startswith("grpc://") and host and port.isdigit()),
        "data.tf_data_service",
        service,
        "grpc://HOST:PORT of a tf.data service dispatcher, or empty",
    )
    _check(
        not (service and data.deterministic),
        "data.deterministic",
        data.deterministic,
        "false with --config.data.tf_data_service (workers produce batches in any order)",
    )


def resolve(
    config: Config,
    *,
    spec,
    num_classes: int,
    num_train_examples: int,
    num_eval_examples: int,
    dataset_name: str = "",
    num_replicas: int = 1,
    weights_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    weights_arithmetic: dict | None = None,
) -> tuple[Config, Derived]:
    """Fills "use the default" fields and computes the derived values.

    Args:
      config: the parsed configuration (not modified).
      spec: the model's registry.ModelSpec (reference resolution, crop, interpolation, mean/std).
      num_classes: classes in the dataset.
      num_train_examples: examples in the training split.
      num_eval_examples: examples in the evaluation split.
      dataset_name: the source's catalog name (official/data/catalog.py), whose mean/std
        then replace the model's defaults; "" for datasets the catalog does not know.
      num_replicas: replicas in sync, which must divide the batch sizes.
      weights_normalization: (mean, std) that the initial weights were trained with
        (`--config.model.init_weights`); they belong to the weights, so they replace
        every other normalization.
      weights_arithmetic: model fields the initial weights need ({"padding": "torch",
        "norm_epsilon": 1e-5} for PyTorch weights); they replace the flags' values.

    Returns:
      (config with every default filled in, derived values).
    """
    from official.training import optimizers

    validate(config)
    resolved = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model),
        data=dataclasses.replace(config.data),
        train=dataclasses.replace(config.train),
        prune=dataclasses.replace(config.prune),
        runtime=dataclasses.replace(config.runtime),
    )
    _fill_defaults(resolved, spec, dataset_name, weights_normalization)
    for field, value in (weights_arithmetic or {}).items():
        setattr(resolved.model, field, value)
    data, model, train = resolved.data, resolved.model, resolved.train
    model.num_classes = model.num_classes or num_classes
    if data.image_size < spec.min_resolution:
        raise ConfigError(
            f"--config.data.image_size={data.image_size}: {spec.name} needs at least "
            f"{spec.min_resolution}"
        )
    if num_train_examples < train.batch_size:
        raise ConfigError(
            f"--config.train.batch_size={train.batch_size}: larger than the "
            f"{num_train_examples} training examples"
        )
    if train.batch_size % (num_replicas * train.gradient_accumulation_steps):
        raise ConfigError(
            f"--config.train.batch_size={train.batch_size}: not divisible by {num_replicas} "
            f"replicas × {train.gradient_accumulation_steps} gradient accumulation steps"
        )
    eval_batch_size = train.eval_batch_size or train.batch_size
    if eval_batch_size % num_replicas:
        raise ConfigError(
            f"--config.train.eval_batch_size={eval_batch_size}: not divisible by {num_replicas} "
            "replicas"
        )
    steps_per_epoch = num_train_examples // train.batch_size
    total_steps = max(1, math.ceil(train.epochs * steps_per_epoch))

    def steps(epochs: float) -> int:
        return int(round(epochs * steps_per_epoch))

    second_stage_step = total_steps - steps(train.second_stage_epochs)
    if train.second_stage_epochs and not 0 < second_stage_step < total_steps:
        raise ConfigError(
            f"--config.train.second_stage_epochs={train.second_stage_epochs}: leaves no steps "
            f"for one of the two stages ({total_steps} steps in all)"
        )
    derived = Derived(
        num_classes=model.num_classes,
        num_train_examples=num_train_examples,
        num_eval_examples=num_eval_examples,
        learning_rate=train.base_learning_rate * train.batch_size / 256,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=steps(train.warmup_epochs),
        eval_batch_size=eval_batch_size,
        lr_decay_steps=tuple(steps(e) for e in train.lr_decay_epochs),
        lr_decay_interval_steps=train.lr_decay_every_epochs * steps_per_epoch,
        freeze_backbone_steps=steps(train.freeze_backbone_epochs),
        second_stage_step=second_stage_step if train.second_stage_epochs else 0,
        second_stage_learning_rate=train.second_stage_base_learning_rate * train.batch_size / 256,
        # A different optimizer in the second stage brings its own epsilon.
        second_stage_epsilon=(
            optimizers.DEFAULT_EPSILON.get(train.second_stage_optimizer, train.epsilon)
            if train.second_stage_optimizer != train.optimizer
            else train.epsilon
        ),
        prune_begin_step=steps(resolved.prune.begin_epochs),
        prune_end_step=steps(resolved.prune.end_epochs),
    )
    return resolved, derived


def _fill_defaults(config: Config, spec, dataset_name: str, weights_normalization) -> None:
    """Replaces "the model's / the dataset's / the implementation's own" values (0, "", ())
    by what they stand for, in place."""
    from official.data import augment
    from official.models import mobilenet
    from official.training import optimizers, pruning, schedules

    data, train = config.data, config.train
    multiplier = config.model.resolution_multiplier
    data.image_size = data.image_size or (
        mobilenet.multiplied_resolution(multiplier) if multiplier else spec.default_resolution
    )
    data.crop_fraction = data.crop_fraction or spec.crop_fraction
    data.interpolation = data.interpolation or spec.interpolation
    data.train_crop = data.train_crop or spec.train_crop
    facts = catalog.lookup(dataset_name) if dataset_name else None
    data.mean = tuple(data.mean or (facts and facts.mean) or spec.mean)
    data.std = tuple(data.std or (facts and facts.std) or spec.std)
    if weights_normalization is not None:
        data.mean, data.std = (tuple(float(v) for v in values) for values in weights_normalization)
    data.augment = augment.parse_names(data.augment)
    data.deterministic = data.deterministic or config.runtime.deterministic
    config.prune.layers = pruning.parse_kinds(config.prune.layers)
    config.prune.end_epochs = config.prune.end_epochs or train.epochs
    train.epsilon = train.epsilon or optimizers.DEFAULT_EPSILON.get(train.optimizer, 0.0)
    train.lr_decay_rate = train.lr_decay_rate or schedules.DEFAULT_DECAY_RATE.get(
        train.lr_schedule, 0.0
    )


def to_dict(config: Config, derived: Derived | None = None) -> dict:
    """{"config": {...}, "derived": {...}}: the tree as plain JSON values."""
    payload = {"config": dataclasses.asdict(config)}
    if derived is not None:
        payload["derived"] = dataclasses.asdict(derived)
    return payload


def _from_dict(cls, values: dict):
    """Rebuilds a (nested) config dataclass from `dataclasses.asdict` output."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        factory = field.default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            value = _from_dict(factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def from_dict(payload: dict) -> tuple[Config, Derived | None]:
    """The inverse of `to_dict`."""
    config = _from_dict(Config, payload["config"])
    derived = _from_dict(Derived, payload["derived"]) if "derived" in payload else None
    return config, derived
