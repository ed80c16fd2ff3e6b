import pytest

from official.models import registry


def test_names_are_sorted_and_include_resnets():
    names = registry.names()
    assert names == sorted(names)
    for depth in (18, 34, 50, 101, 152, 200):
        assert f"resnet{depth}" in names


def test_unknown_name_lists_known_names_and_close_matches():
    with pytest.raises(registry.UnknownModelError) as error:
        registry.get("resnet51")
    message = str(error.value)
    assert "unknown model 'resnet51'" in message
    assert "Did you mean" in message and "resnet50" in message
    for name in registry.names():
        assert name in message


def test_metadata_of_a_registered_model():
    spec = registry.get("resnet50")
    assert spec.family == "resnet"
    assert spec.default_resolution == 224
    assert spec.crop_fraction == 0.875
    assert spec.interpolation == "bilinear"
    assert spec.mean == pytest.approx((123.675, 116.28, 103.53))
    assert spec.std == pytest.approx((58.395, 57.12, 57.375))


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("resnet50", lambda **kw: None, family="x", default_resolution=1)


def test_build_rejects_images_below_the_minimum():
    with pytest.raises(ValueError, match="at least 32 px"):
        registry.get("resnet18").build(image_size=16)
