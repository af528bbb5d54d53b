"""uint8 RGB pixels -> a model's input scale, as one Keras layer shared by labeling and training."""

from __future__ import annotations

import keras
from keras import ops

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocessing_layer(mode: str, channel_order: str = "rgb") -> keras.layers.Layer:
    """The layer that scales uint8 RGB the way the bundle's `preprocessing` says (see `spec.PREPROCESSING`).

    Labeling puts it in front of the model inside the compiled predict function,
    and training puts the same layer inside the training model, so the two can
    never disagree.
    """

    class Preprocess(keras.layers.Layer):
        """uint8 RGB -> the model's input scale; built at load time, never saved."""

        def call(self, x):
            x = ops.cast(x, "float32")
            if channel_order == "bgr":  # frames arrive RGB; a model trained on cv2.imread images wants BGR
                x = ops.flip(x, axis=-1)
            if mode == "unit":
                return x / 255.0
            if mode == "symmetric":
                return x / 127.5 - 1.0
            if mode == "imagenet":
                return (x / 255.0 - ops.convert_to_tensor(_IMAGENET_MEAN)) / ops.convert_to_tensor(_IMAGENET_STD)
            if mode == "caffe":
                return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR)
            return x

    return Preprocess(name=f"vidbatch_preprocess_{mode}_{channel_order}")
