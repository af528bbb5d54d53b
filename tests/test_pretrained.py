"""A pretrained .tflite classifier file as the model, with --classes: labels with no training."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import vidbatch
from tests.support.encoders import make_tflite_classifier, make_tflite_encoder
from tests.support.helpers import SHARED_DATA
from vidbatch.core.errors import ModelBundleError
from vidbatch.model.pretrained import unique_names

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    (folder / "labels.txt").write_text("ball\nbox\nwaves\n")
    return str(folder / "colour.tflite"), str(folder / "labels.txt")


@pytest.fixture(scope="module")
def classifier_file(classifier):
    make_tflite_classifier(classifier[0])
    return classifier


def test_a_tflite_classifier_and_its_labels_label_with_no_training(classifier_file, synth_set, tmp_path):
    model, labels = classifier_file
    result = vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=labels, fps=5, progress=False)
    assert (result.ok, result.failed) == (6, 0)
    summary = result.summary_frame()
    assert (summary.pred_label == summary.label).all()
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["model"]["classes"] == ["ball", "box", "waves"] and run["model"]["input_size"] == [32, 32]
    assert run["model"]["encoder"]["format"] == "tflite" and len(run["model"]["encoder"]["sha256"]) == 64
    assert any("pretrained classifier" in note and "centre-cropped" in note for note in run["model"]["notes"])
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert set(segments.label) == {"ball", "box", "waves"}


def test_classes_are_part_of_the_run_identity(classifier_file, synth_set, tmp_path):
    model, labels = classifier_file
    vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=labels, fps=5, progress=False)
    other = tmp_path / "other.txt"
    other.write_text("red\nblue\ngreen\n")
    with pytest.raises(vidbatch.OutputError, match="another model"):
        vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=str(other), fps=5, progress=False)


def test_bad_classes_are_refused_in_words_before_any_work(classifier_file, synth_set, tmp_path):
    model, labels = classifier_file
    short = tmp_path / "two.txt"
    short.write_text("ball\nbox\n")
    run = [sys.executable, "-m", "vidbatch.cli", "label", synth_set, "--model", model, "--out", str(tmp_path / "o")]
    wrong = subprocess.run(run + ["--classes", str(short)], capture_output=True, text=True, env=ENV, timeout=120)
    assert wrong.returncode == 2 and "outputs 3 scores per frame but --classes names 2" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    none = subprocess.run(run, capture_output=True, text=True, env=ENV, timeout=120)
    assert none.returncode == 2 and "pass --classes FILE" in none.stderr
    assert not (tmp_path / "o" / "summary.parquet").exists()


def test_a_file_that_is_not_a_frame_classifier_is_refused(tmp_path):
    from vidbatch.model.bundle import load_bundle

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model" * 100)
    labels = tmp_path / "l.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(ModelBundleError, match="junk.tflite"):
        load_bundle(str(junk), classes=str(labels))
    encoder = make_tflite_encoder(str(tmp_path / "enc.tflite"))  # 195 features: not 2 classes
    with pytest.raises(ModelBundleError, match="outputs 195 scores per frame but --classes names 2"):
        load_bundle(encoder, classes=str(labels))


def test_repeated_label_names_are_made_unique():
    assert unique_names(["a", "crane", "b", "crane"]) == (["a", "crane", "b", "crane (2)"], ["crane (2)"])


WEIGHTS = os.path.join(SHARED_DATA, "weights")


@pytest.mark.shared_data
def test_the_shared_imagenet_mobilenet_names_the_cockatoo(tmp_path):
    """cockatoo.mp4 through the shared int8 ImageNet MobileNetV2 and its 1,001 labels (index 0 background)."""
    model = os.path.join(WEIGHTS, "mobilenet_v2_1.0_224_quant.tflite")
    video = os.path.join(SHARED_DATA, "videos", "cockatoo.mp4")
    if not (os.path.exists(model) and os.path.exists(video)):
        pytest.skip(f"shared weights or videos not present under {SHARED_DATA}")
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"video_id": "cockatoo", "uri": video}]).to_csv(manifest, index=False)
    result = vidbatch.label(str(manifest), model, str(tmp_path / "out"), progress=False,
                            classes=os.path.join(WEIGHTS, "imagenet_labels.txt"))
    summary = result.summary_frame()
    assert result.ok == 1 and "cockatoo" in summary.pred_label[0], summary.top_k[0]
    notes = json.load(open(tmp_path / "out" / "run.json"))["model"]["notes"]
    assert any("crane (2)" in note for note in notes)  # ImageNet names the bird and the machine alike


def test_inspect_shows_how_the_file_is_read(classifier_file):
    from vidbatch.apps.describe import describe

    model, labels = classifier_file
    text = describe(model, classes=labels)
    assert "classes (3): ball, box, waves" in text and "input size:    32x32" in text
    assert "colour.tflite (tflite, litert), 3 features" in text and "pretrained classifier" in text


@pytest.mark.slow
def test_the_ray_engine_runs_a_pretrained_classifier_like_the_local_engine(classifier_file, synth_set, tmp_path):
    from tests.support.raytools import assert_same_answers

    model, labels = classifier_file
    options = dict(classes=labels, fps=5, batch_size=8, progress=False)
    local = vidbatch.label(synth_set, model, str(tmp_path / "local"), **options)
    ray_run = vidbatch.label(synth_set, model, str(tmp_path / "ray"), engine="ray", **options)
    assert (ray_run.ok, local.ok) == (6, 6)
    assert_same_answers(tmp_path / "ray", tmp_path / "local")


@pytest.mark.parametrize("content", [
    b"ball\nbox\nwaves\n",
    b"\xef\xbb\xbfball\r\nbox\r\nwaves\r\n",  # a BOM and CRLF, as Windows editors save it
    b'\xef\xbb\xbf["ball", "box", "waves"]',
])
def test_a_classes_file_saved_anywhere_reads_the_same_names(content, tmp_path):
    from vidbatch.model.legacy import read_classes

    path = tmp_path / "labels.txt"
    path.write_bytes(content)
    assert read_classes(str(path))["classes"] == ["ball", "box", "waves"]
