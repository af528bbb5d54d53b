"""Training: a frame CNN on frames of labeled videos or on an image folder; offline truth for ImageNet weights."""

import json
import os

import keras
import numpy as np
import pytest

import vidbatch
from vidbatch import ConfigError
from vidbatch.apps.synth import SynthSpec, make_dataset
from vidbatch.apps.train.data import load_image_folder, split_by_group
from vidbatch.apps.train.trainer import TrainConfig, train

pytestmark = pytest.mark.slow


def test_split_is_by_group_and_stratified():
    y = np.repeat([0, 1], 40)
    groups = np.repeat(np.arange(16), 5)  # 8 videos per class, 5 frames each
    train_mask, test_mask = split_by_group(y, groups, 0.25, seed=0)
    assert not set(groups[train_mask]) & set(groups[test_mask])
    assert len(set(groups[test_mask & (y == 0)])) == 2 and len(set(groups[test_mask & (y == 1)])) == 2


def test_train_frames_on_a_video_manifest_and_label_with_it(tmp_path):
    data = make_dataset(str(tmp_path / "train"), videos_per_class=10, seed=3, spec=SynthSpec(width=64, height=48, seconds=1.2))
    bundle = str(tmp_path / "bundle")
    metrics = train(TrainConfig(data=data, out=bundle, image_size=32, epochs=8, fps=5, width=8, batch_size=16))
    assert sorted(os.listdir(bundle)) == ["bundle.json", "confusion.png", "history.png", "metrics.json", "model.keras"]
    saved = json.load(open(os.path.join(bundle, "metrics.json")))
    assert saved["test_accuracy"] == metrics["test_accuracy"] >= 0.8
    assert set(saved["report"]["per_class"]) == {"ball", "box", "waves"} and saved["epochs"] == 8
    assert not set(saved["data"]["test_sources"]) & set(saved["data"]["train_sources"])  # split by video
    assert len(saved["data"]["test_sources"]) == 6 and saved["data"]["train_groups"] == 24
    # the bundle labels videos through the labeling job unchanged
    labeled = make_dataset(str(tmp_path / "new"), videos_per_class=2, seed=9, spec=SynthSpec(width=64, height=48, seconds=2))
    summary = vidbatch.label(labeled, bundle, str(tmp_path / "out"), progress=False).summary_frame()
    assert (summary["pred_label"] == summary["label"]).mean() >= 0.8


def write_image(path, colour, shape, fmt):
    import cv2

    image = np.full((40, 40, 3), 60, np.uint8)
    if shape == "circle":
        cv2.circle(image, (20, 20), 10, colour, -1)
    else:
        cv2.rectangle(image, (10, 10), (30, 30), colour, -1)
    if fmt == "gif":
        from PIL import Image

        Image.fromarray(image[..., ::-1]).save(path, format="GIF")
    else:
        cv2.imwrite(path + "." + fmt, image)
        os.rename(path + "." + fmt, path)


def test_image_folder_with_broken_files(tmp_path):
    root = tmp_path / "images"
    for label, colour, shape in (("red", (0, 0, 230), "circle"), ("blue", (230, 0, 0), "square")):
        (root / label).mkdir(parents=True)
        for i in range(30):
            write_image(str(root / label / f"{i:03d}.aspx"), colour, shape, ("png", "jpg", "gif")[i % 3])
    (root / "red" / "empty.jpg").write_bytes(b"")
    (root / "blue" / "notes.jpg").write_text("not an image")
    samples = load_image_folder(str(root), (32, 32))
    assert samples.classes == ["blue", "red"] and len(samples.x) == 60 and samples.sources == 62
    assert samples.skipped == {"empty file": 1, "not a readable image": 1}
    metrics = train(TrainConfig(data=str(root), out=str(tmp_path / "b"), image_size=32, epochs=10, width=8, batch_size=8))
    assert metrics["data"]["skipped"] == {"empty file": 1, "not a readable image": 1}
    assert metrics["data"]["test_items"] == 16 and metrics["test_accuracy"] >= 0.8


def test_refit_ships_a_model_trained_on_every_item(tmp_path):
    """--refit on a model from pixels: the metrics are the held-out estimate of the first fit (the same as without
    it), and the bundle holds a model trained again, from the start, on every item."""
    root = tmp_path / "images"
    for label, colour, shape in (("red", (0, 0, 230), "circle"), ("blue", (230, 0, 0), "square")):
        (root / label).mkdir(parents=True)
        for i in range(12):
            write_image(str(root / label / f"{i:03d}.png"), colour, shape, "png")
    runs = {refit: train(TrainConfig(data=str(root), out=str(tmp_path / str(refit)), image_size=32, epochs=2, width=8,
                                     batch_size=8, refit=refit)) for refit in (False, True)}
    assert runs[False]["refit"] is None and runs[True]["refit"]["items"] == 24
    assert runs[True]["test_accuracy"] == pytest.approx(runs[False]["test_accuracy"])
    measured, shipped = (keras.saving.load_model(str(tmp_path / str(r) / "model.keras"), compile=False).get_weights()
                         for r in (False, True))
    assert not all(np.array_equal(a, b) for a, b in zip(measured, shipped))


def test_imagenet_weights_offline_names_the_way_out(monkeypatch, tmp_path):
    from vidbatch.model.architectures import backbone_model

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # no route out, whatever machine runs this
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no cached weights either
    with pytest.raises(ConfigError, match="--weights none.*--weights PATH"):
        backbone_model("mobilenet_v2", (96, 96, 3), 3, "imagenet")
    with pytest.raises(ConfigError, match="no such file"):
        backbone_model("mobilenet_v2", (96, 96, 3), 3, str(tmp_path / "missing.h5"))


def test_backbone_from_scratch_trains(tmp_path):
    data = make_dataset(str(tmp_path / "train"), videos_per_class=4, seed=4, spec=SynthSpec(width=64, height=48, seconds=1))
    metrics = train(TrainConfig(data=data, out=str(tmp_path / "b"), backbone="mobilenet_v2", weights=None, image_size=32,
                                epochs=1, fps=5))
    bundle = json.load(open(tmp_path / "b" / "bundle.json"))
    assert bundle["preprocessing"] == "symmetric" and bundle["input_size"] == [32, 32]
    assert metrics["epochs"] == 1


def test_bad_train_options():
    with pytest.raises(ConfigError, match="Received: backbone='vgg'"):
        TrainConfig(data="x", out="y", backbone="vgg")
    with pytest.raises(ConfigError, match="Received: epochs=0"):
        TrainConfig(data="x", out="y", epochs=0)
    with pytest.raises(ConfigError, match="Received: refit='yes'"):
        TrainConfig(data="x", out="y", refit="yes")
    # on by default for a head on an encoder, unless named held-out groups are a test set; off from pixels
    assert TrainConfig(data="x", out="y").refit is False
    assert TrainConfig(data="x", out="y", encoder="e.tflite", fps=5).refit is True
    assert TrainConfig(data="x", out="y", encoder="e.tflite", fps=5, holdout_groups=("g1",)).refit is False
