"""The preprocessing layer shared by labeling and training: uint8 RGB -> each mode's input scale."""

import numpy as np
import pytest

from vidbatch.model.preprocessing import preprocessing_layer
from vidbatch.model.spec import PREPROCESSING

PIXELS = np.array([[[[0, 128, 255]]]], np.uint8)  # one RGB pixel


@pytest.mark.parametrize("mode,expected", [
    ("none", [0.0, 128.0, 255.0]),
    ("unit", [0.0, 128 / 255, 1.0]),
    ("symmetric", [-1.0, 128 / 127.5 - 1, 1.0]),
    ("imagenet", [(0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]),
    ("caffe", [255 - 103.939, 128 - 116.779, 0 - 123.68]),  # BGR order, ImageNet means subtracted
])
def test_each_mode(mode, expected):
    out = np.asarray(preprocessing_layer(mode)(PIXELS))
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-5, atol=1e-5)


def test_every_declared_mode_is_handled():
    assert set(PREPROCESSING) == {"none", "unit", "symmetric", "imagenet", "caffe"}
