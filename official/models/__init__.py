"""The model zoo. Importing this package registers every family in `official.registry`."""

from official.models import resnet  # noqa: F401  (registers the ResNet family)
