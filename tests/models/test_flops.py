import keras
import pytest

from official.models import count_flops


def test_counts_multiply_adds_of_every_kernel_layer():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8·8·4 outputs · 3·3·3
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4·4·4 · 3·3
    x = keras.layers.Conv2D(8, 1, groups=2)(x)  # 4·4·8 · 1·1·(4/2)
    x = keras.layers.SeparableConv2D(6, 3, padding="same")(x)  # 4·4·8·9 + 4·4·8·6
    x = keras.layers.BatchNormalization()(x)  # not counted
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5)(x)  # 6 · 5
    model = keras.Model(inputs, x)
    assert count_flops(model) == 6912 + 576 + 256 + 1152 + 768 + 30


def test_shared_layers_count_once_per_call():
    inputs = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(2, 1)
    model = keras.Model(inputs, conv(conv(inputs)))
    assert count_flops(model) == 2 * (4 * 4 * 2 * 2)


def test_dynamic_sizes_are_refused():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="conv has shape .* fixed image_size"):
        count_flops(model)
