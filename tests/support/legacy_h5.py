"""Write a Keras-2-style .h5 model the way TensorFlow 2.x did (tf.keras 2.x config keys), from a Keras 3 model."""

from __future__ import annotations

import json

import h5py


def _keras2_layer(layer: dict, names: dict) -> dict:
    config = dict(layer["config"])
    if isinstance(config.get("dtype"), dict):  # Keras 3 DTypePolicy -> tf.keras 2 plain dtype string
        config["dtype"] = config["dtype"]["config"]["name"]
    if layer["class_name"] == "InputLayer":
        config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("optional", None)
    for key, value in list(config.items()):
        if key.endswith("_initializer") and isinstance(value, dict):
            # tf.keras 2.x stored the dtype inside initializer configs; Keras 3 rejects it
            seed = {"seed": value["config"]["seed"]} if "seed" in value["config"] else {}
            config[key] = {"class_name": value["class_name"], "config": {**seed, "dtype": "float32"}}
        elif isinstance(value, dict) and "module" in value:
            config[key] = {"class_name": value["class_name"], "config": value["config"]}
    inbound = []
    for node in layer.get("inbound_nodes", []):
        args = node["args"] if isinstance(node, dict) else []
        tensors = args[0] if args and isinstance(args[0], list) else args
        inbound.append([[t["config"]["keras_history"][0], t["config"]["keras_history"][1], t["config"]["keras_history"][2], {}]
                        for t in tensors])
    return {"class_name": layer["class_name"], "config": config, "name": layer["name"], "inbound_nodes": inbound}


def write_keras2_h5(model, path: str) -> None:
    """Save `model` as h5, then rewrite its stored config as tf.keras 2.x wrote it."""
    model.save(path)
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        inner = config["config"]
        inner["layers"] = [_keras2_layer(layer, {}) for layer in inner["layers"]]
        handle.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": inner}).encode()
        handle.attrs["keras_version"] = b"2.13.1"
        handle.attrs["backend"] = b"tensorflow"
