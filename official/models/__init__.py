"""The model zoo. Importing this package registers every family in `official.models.registry`.

Also exported: `port_keras_applications_weights` (start from keras.applications weights) and
`count_flops` (multiply-adds from layer shapes).
"""

# Each family module registers its variants when imported.
from official.models import (  # noqa: F401
    alexnet,
    densenet,
    efficientnet,
    inception,
    lenet,
    mobilenet,
    nasnet,
    resnet,
    shufflenet,
    squeezenet,
    vgg,
    xception,
)
from official.models.flops import count_flops
from official.models.port import InputNormalization, port_keras_applications_weights

__all__ = ["InputNormalization", "count_flops", "port_keras_applications_weights"]
