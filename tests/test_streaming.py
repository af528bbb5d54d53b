"""Streaming, stateful video models (MoViNet-Stream's shape) and label maps: labels with no training.

A tiny stateful .tflite made here with TensorFlow's converter stands in for MoViNet (no shared data needed); the
shared MoViNet-A0 itself is tested when ../shared/data is present.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

import vidbatch
from tests.support.encoders import make_streaming_classifier, make_tflite_encoder, streaming_reference
from tests.support.helpers import SHARED_DATA
from vidbatch.core.errors import ConfigError, ModelBundleError
from vidbatch.model.label_map import LabelMap
from vidbatch.model.streaming import ResetRule, StreamingModel
from vidbatch.stages.ranges import RangeSplitter

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
WEIGHTS = os.path.join(SHARED_DATA, "weights")
MOVINET = os.path.join(WEIGHTS, "movinet_a0_stream_kinetics600_int8.tflite")
KINETICS = os.path.join(WEIGHTS, "kinetics600_labels.txt")
UCF = os.path.join(SHARED_DATA, "ucf101")
UCF_MAP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                       "ucf101_from_kinetics600.json")


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    (folder / "labels.txt").write_text("ball\nbox\nwaves\n")
    return make_streaming_classifier(str(folder / "stream.tflite")), str(folder / "labels.txt")


@pytest.fixture(scope="module")
def stream_model(stream_file):
    with open(stream_file[0], "rb") as handle:
        return StreamingModel(handle.read(), stream_file[0], head_input="logits", lanes=2)


def videos(count: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """Frames whose colours change from frame to frame (so every state shows in the logits)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (length + i, 32, 32, 3), dtype=np.uint8) for i in range(count)]


def test_the_state_is_carried_from_frame_to_frame_of_each_video(stream_model):
    frames = videos(1, 12)[0]
    logits, _ = stream_model.run(frames, ["a"] * len(frames))
    np.testing.assert_allclose(logits, streaming_reference(frames, np.zeros(len(frames), bool)), atol=1e-4)
    # ...and across calls: the next frames of "a" continue from its state
    more = videos(1, 5, seed=1)[0]
    logits, _ = stream_model.run(more, ["a"] * len(more))
    both = np.concatenate([frames, more])
    np.testing.assert_allclose(logits, streaming_reference(both, np.zeros(len(both), bool))[len(frames):], atol=1e-4)
    stream_model.forget(["a"])
    assert stream_model.videos_held == 0


def test_the_state_starts_over_at_each_cut(stream_model):
    frames = videos(1, 10)[0]
    cuts = np.zeros(len(frames), bool)
    cuts[[4, 7]] = True
    logits, _ = stream_model.run(frames, ["v"] * len(frames), cuts)
    stream_model.forget(["v"])
    np.testing.assert_allclose(logits, streaming_reference(frames, cuts), atol=1e-4)
    # the frame after a cut is labeled as if the video began there
    fresh, _ = stream_model.run(frames[4:], ["w"] * 6)
    stream_model.forget(["w"])
    np.testing.assert_allclose(logits[4], fresh[0], atol=1e-5)
    assert not np.allclose(logits[5], streaming_reference(frames, np.zeros(10, bool))[5], atol=1e-3)


def test_a_periodic_reset_counts_frames_since_the_last_reset():
    rule = ResetRule(period=3)
    flags, since = rule.flags(np.array([0, 0, 0, 0, 1, 0, 0, 0], bool), None)
    assert flags.tolist() == [True, False, False, True, True, False, False, True] and since == 1
    flags, since = rule.flags(np.zeros(3, bool), since)  # continues across calls
    assert flags.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="period"):
        ResetRule(period=-1)


def test_many_videos_interleaved_in_one_batch_equal_each_alone(stream_model):
    clips = videos(5, 9, seed=3)
    alone = [stream_model.run(v, [("alone", i)] * len(v))[0] for i, v in enumerate(clips)]
    stream_model.forget([("alone", i) for i in range(5)])
    # chunks of 4 frames of every video, round robin, several videos in each call (two lanes)
    got = {i: [] for i in range(5)}
    position = [0] * 5
    while any(position[i] < len(clips[i]) for i in range(5)):
        frames, keys = [], []
        for i in range(5):
            part = clips[i][position[i] : position[i] + 4]
            position[i] += len(part)
            frames += list(part)
            keys += [i] * len(part)
        logits, _ = stream_model.run(np.stack(frames), keys)
        for i in range(5):
            got[i].append(logits[np.array(keys) == i])
    for i in range(5):
        np.testing.assert_array_equal(np.concatenate(got[i]), alone[i])
    stream_model.forget(range(5))


def test_time_ranges_with_their_pre_roll_equal_the_unsplit_video(stream_file):
    """A long video cut into ranges (as the Ray engine cuts it): each range classified alone, from a fresh state,
    starting at the last reset point before it, gives the unsplit video's logits for its own items."""
    with open(stream_file[0], "rb") as handle:
        model = StreamingModel(handle.read(), "stream", head_input="logits", reset=ResetRule(period=7))
    frames = videos(1, 60, seed=4)[0]
    cuts = np.zeros(60, bool)
    cuts[[13, 40]] = True
    whole, _ = model.run(frames, ["whole"] * 60, cuts)
    splitter = RangeSplitter(range_items=9, overlap=2, reset=model.reset)
    units = []
    for start in range(0, 60, 8):  # chunks of 8, as a decoder sends them
        part = slice(start, start + 8)
        units += splitter.push({"frames": frames[part], "frame_index": np.arange(60)[part],
                                "timestamp_s": np.arange(60)[part] / 5.0, "shot_cut": cuts[part]})
    units.append(splitter.finish())
    assert len(units) > 5
    assert any(u.overlap > 2 for u in units)  # a range whose reset point lies further back than the window
    seen = []
    for n, unit in enumerate(units):
        logits, _ = model.run(unit.arrays["frames"], [("unit", n)] * len(unit), unit.shot_cut)
        model.forget([("unit", n)])
        own = unit.frame_index[unit.overlap:]
        np.testing.assert_allclose(logits[unit.overlap:], whole[own], atol=1e-5)
        seen += own.tolist()
    assert seen == list(range(60))


def test_a_streaming_classifier_labels_videos_with_no_training(stream_file, synth_set, tmp_path):
    model, labels = stream_file
    result = vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=labels, progress=False)
    assert (result.ok, result.failed) == (6, 0)
    summary = result.summary_frame()
    assert (summary.pred_label == summary.label).all(), summary[["video_id", "pred_label"]]
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["config"]["fps"] == 5.0  # the streaming default, not the frame models' 2 fps
    streaming = run["model"]["streaming"]
    assert streaming["stateful"] and streaming["state_tensors"] == 3 and streaming["reset_every_frames"] == 20
    assert streaming["value_range"] == "float32 [0, 1]" and streaming["image_shape"] == [1, 1, 32, 32, 3]
    assert any("streaming video model" in note and "5 fps" in note for note in run["model"]["notes"])
    assert run["stages"]["layout"]["streaming"]["lanes"] >= 1


def test_bad_videos_among_good_ones_fail_alone(stream_file, synth_set, tmp_path):
    """Videos that fail before or after sending frames (a cut AVI fails once its frames stop) while their frames
    are being classified: each gets a failed row, every other video its labels, and no state is left behind."""
    from tests.support.badfiles import avi_cut, random_bytes

    model, labels = stream_file
    rows = pd.read_csv(synth_set)
    rows["uri"] = [os.path.join(os.path.dirname(synth_set), u) for u in rows.uri]
    folder = str(tmp_path / "bad")
    os.makedirs(folder)
    bad = pd.DataFrame([{"video_id": "random", "uri": random_bytes(folder)},
                        {"video_id": "cut", "uri": avi_cut(folder, frames=200)}])
    manifest = tmp_path / "m.csv"
    pd.concat([rows.iloc[:3], bad, rows.iloc[3:]], ignore_index=True).to_csv(manifest, index=False)
    result = vidbatch.label(str(manifest), model, str(tmp_path / "out"), classes=labels, progress=False,
                            decode_workers=2, batch_size=4)
    summary = result.summary_frame().set_index("video_id")
    assert (result.ok, result.failed) == (6, 2)
    assert "truncated" in summary.error["cut"] and summary.error["random"]
    good = summary[summary.status == "ok"]
    assert (good.pred_label == good.label).all()


def test_a_label_change_at_a_hard_cut_gives_both_labels(stream_file, tmp_path):
    """A ball shot, then a box shot: the state starts over at the cut, so the box frames are not outvoted by the
    ball frames before them (without the reset, the running mean keeps 'ball' well past the cut)."""
    from vidbatch.apps.synth import SynthSpec, write_shots_video

    model, labels = stream_file
    path = str(tmp_path / "two.mp4")
    write_shots_video(path, ["ball", "box"], seed=3, spec=SynthSpec(width=96, height=72, seconds=3.0))
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"video_id": "two", "uri": path}]).to_csv(manifest, index=False)
    frames = {}
    for name, shots in (("cut", 0.3), ("nocut", None)):
        vidbatch.label(str(manifest), model, str(tmp_path / name), classes=labels, progress=False, window=1,
                       shot_threshold=shots, state_reset_s=0)
        frames[name] = pd.read_parquet(tmp_path / name / "frames").sort_values("frame_index")
    cut = frames["cut"]
    assert cut[cut.timestamp_s < 3.0].raw_label.eq("ball").all() and cut[cut.timestamp_s >= 3.0].raw_label.eq("box").all()
    segments = pd.read_parquet(tmp_path / "cut" / "segments.parquet")
    assert segments.label.tolist() == ["ball", "box"]
    nocut = frames["nocut"]
    assert (nocut[nocut.timestamp_s >= 3.0].raw_label == "ball").sum() >= 3  # what the reset prevents


def test_annotate_runs_a_streaming_model_as_labeling_does(stream_file, tmp_path):
    """`vidbatch annotate` with a streaming model: its sampled frames through one state, started over at the cut,
    in the map's classes; every frame of the video shows the last sampled frame's label, so the frames shown as
    the second class start at the first sampled frame `vidbatch label` gives it."""
    from vidbatch.apps.annotate import annotate
    from vidbatch.apps.synth import SynthSpec, write_shots_video

    model, labels = stream_file
    path = str(tmp_path / "two.mp4")
    write_shots_video(path, ["ball", "box"], seed=3, spec=SynthSpec(width=96, height=72, seconds=3.0))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"round": ["ball"], "square": ["box"]}))
    options = dict(classes=labels, label_map=str(mapping), label_map_rest="drop", state_reset_s=0)
    result = annotate(path, model, str(tmp_path / "two_labeled.mp4"), window=1, **options)
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"video_id": "two", "uri": path}]).to_csv(manifest, index=False)
    vidbatch.label(str(manifest), model, str(tmp_path / "out"), window=1, progress=False, **options)
    frames = pd.read_parquet(tmp_path / "out" / "frames").sort_values("frame_index")
    first_square = int(frames[frames.raw_label == "square"].frame_index.min())
    assert frames.raw_label.tolist() == ["round"] * (frames.frame_index < first_square).sum() + \
        ["square"] * (frames.frame_index >= first_square).sum()
    assert result.frames == 150 and result.labels == {"round": first_square, "square": 150 - first_square}
    assert result.classified == len(frames) == 30  # the model saw its 5 fps (6 s), not all 150 frames
    capture = cv2.VideoCapture(str(tmp_path / "two_labeled.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 150


def test_eval_takes_a_pretrained_file_and_a_label_map(stream_file, synth_set, tmp_path):
    """`vidbatch eval` reads a model as `label` does (--classes, --label-map, --state-reset-s): the zero-shot
    accuracy of a pretrained file in the user's classes, in one command."""
    from vidbatch.cli import main

    model, labels = stream_file
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"ball": ["ball"], "box": ["box"], "waves": ["waves"]}))
    out = tmp_path / "eval"
    assert main(["eval", "--manifest", synth_set, "--model", model, "--out", str(out), "--classes", labels,
                 "--label-map", str(mapping), "--label-map-rest", "drop", "--state-reset-s", "0.6",
                 "--no-progress"]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["video_accuracy"] == 1.0 and metrics["videos_scored"] == 6
    run = json.load(open(out / "labels" / "run.json"))
    assert run["model"]["label_map"]["rest"] == "drop" and run["config"]["state_reset_s"] == 0.6


def test_a_label_map_speaks_the_users_classes(stream_file, synth_set, tmp_path):
    model, labels = stream_file
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"round": ["ball"], "square": ["box"]}))
    result = vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=labels, label_map=str(mapping),
                            progress=False, frame_top_k=2, model_top_k=2)
    summary = result.summary_frame()
    expected = summary.label.map({"ball": "round", "box": "square", "waves": "other"})
    assert (summary.pred_label == expected).all(), summary[["label", "pred_label"]]
    # for audit, what the model itself said, in its own classes, beside the mapped labels
    assert [top[0]["label"] for top in summary.model_top_k] == summary.label.tolist()
    assert all(len(top) == 2 and top[0]["score"] >= top[1]["score"] for top in summary.model_top_k)
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert set(frames.smoothed_label) <= {"round", "square", "other"}
    assert {t["label"] for top in frames.model_top_k for t in top} <= {"ball", "box", "waves"}
    assert (frames.model_top_k.map(lambda top: top[0]["label"]).map({"ball": "round", "box": "square", "waves": "other"})
            == frames.raw_label).all()  # each item's mapped label is its best model class's target (one class each)
    segments = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert set(segments.label) == {"round", "square", "other"}
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["model"]["classes"] == ["round", "square", "other"]
    from vidbatch.apps.report import write_report

    page = open(write_report(str(tmp_path / "out"), str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "square" in page and "round" in page  # the report speaks the mapped classes
    assert "model_top_k" in page and "ball 0." in page  # and shows what the model said
    from vidbatch.apps.describe import describe

    assert "label map map.json: 2 classes from 2 of the model's 3 (max, rest other); the model's own top-2 kept" \
        in describe(str(tmp_path / "out"))
    assert run["model"]["label_map"]["combine"] == "max" and run["model"]["label_map"]["model_classes"] == 3
    # the map is part of the run identity
    mapping.write_text(json.dumps({"round": ["ball", "waves"], "square": ["box"]}))
    with pytest.raises(vidbatch.OutputError, match="another model"):
        vidbatch.label(synth_set, model, str(tmp_path / "out"), classes=labels, label_map=str(mapping), progress=False)
    dropped = vidbatch.label(synth_set, model, str(tmp_path / "drop"), classes=labels, label_map=str(mapping),
                             label_map_rest="drop", progress=False)
    assert set(dropped.summary_frame().pred_label) == {"round", "square"}


def test_label_map_sum_and_max():
    probs = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]], np.float32)
    classes = ("a1", "a2", "b", "c")
    text = json.dumps({"A": ["a1", "a2"], "B": "b"})
    summed = LabelMap.from_json(text, classes).apply(probs)
    np.testing.assert_allclose(summed, [[0.8, 0.1, 0.1], [0.2, 0.4, 0.4]], atol=1e-6)
    maxed = LabelMap.from_json(text, classes, combine="max").apply(probs)
    np.testing.assert_allclose(maxed, [[0.5, 0.1, 0.1], [0.1, 0.4, 0.4]], atol=1e-6)
    dropped = LabelMap.from_json(text, classes, rest="drop").apply(probs)
    np.testing.assert_allclose(dropped, [[0.8 / 0.9, 0.1 / 0.9], [1 / 3, 2 / 3]], atol=1e-6)
    assert LabelMap.from_json(text, classes, rest="drop").classes == ("A", "B")


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a non-empty JSON object"),
    (json.dumps({"A": ["bal"]}), "not classes of the model: 'bal' \\(did you mean 'ball'\\?\\)"),
    (json.dumps({"A": ["ball"], "B": ["ball"]}), "mapped to both 'A' and 'B'"),
    (json.dumps({"other": ["ball"]}), "names a target 'other'"),
    (json.dumps({"A": []}), "non-empty list"),
    ('{"A": ["ball"], "B": ["box"], "A": ["waves"]}', "names 'A' twice"),  # not silently the last
    ('\ufeff{"A": ["ball"], "B": ["box"]}'.encode("utf-8"), None),  # a BOM (Windows editors) is fine
])
def test_bad_label_maps_are_refused_in_words(text, message):
    if message is None:
        assert LabelMap.from_json(text, ("ball", "box", "waves"), source="map.json").targets == ("A", "B")
        return
    with pytest.raises(ModelBundleError, match=message):
        LabelMap.from_json(text, ("ball", "box", "waves"), source="map.json")


def test_bad_inputs_are_refused_before_any_work(stream_file, synth_set, tmp_path):
    """A map that is not JSON (through the command line: exit 2, one clear line), an unknown class, --classes of
    the wrong count, a .tflite with an unexpected signature: each refused in words, nothing labeled."""
    import tensorflow as tf

    model, labels = stream_file
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'round': ['ball']}")
    run = [sys.executable, "-m", "vidbatch.cli", "label", synth_set, "--model", model, "--out", str(tmp_path / "o"),
           "--classes", labels, "--label-map", str(bad_json)]
    done = subprocess.run(run, capture_output=True, text=True, env=ENV, timeout=180)
    assert done.returncode == 2 and "not valid JSON" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "o" / "summary.parquet").exists()

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"round": ["football"]}))
    two = tmp_path / "two.txt"
    two.write_text("ball\nbox\n")

    class Odd(tf.Module):  # two inputs, neither a state whose output has its name
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image"),
                                      tf.TensorSpec([1, 4], tf.float32, name="extra")])
        def __call__(self, image, extra):
            return {"logits": tf.reduce_mean(image, axis=[1, 2]) + tf.reduce_sum(extra)}

    odd = Odd()
    odd_path = tmp_path / "odd.tflite"
    odd_path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [odd.__call__.get_concrete_function()], odd).convert())
    noise_path = tmp_path / "noise.tflite"
    noise_path.write_bytes(np.random.default_rng(0).bytes(2000))
    cases = [
        (model, dict(classes=labels, label_map=str(unknown)), "not classes of the model: 'football'"),
        (model, dict(classes=str(two)), "outputs 3 scores per frame but --classes names 2"),
        (str(odd_path), dict(classes=labels), "unexpected signature for a streaming video model"),
        (str(noise_path), dict(classes=labels), "Cannot load model .*noise.tflite.*not a TensorFlow Lite model"),
    ]
    for n, (path, options, message) in enumerate(cases):
        with pytest.raises(ModelBundleError, match=message):
            vidbatch.label(synth_set, path, str(tmp_path / f"o{n}"), progress=False, **options)
        assert not (tmp_path / f"o{n}" / "summary.parquet").exists()
    with pytest.raises(vidbatch.ConfigError, match="Invalid `model_top_k`.*without a label_map"):
        vidbatch.label(synth_set, model, str(tmp_path / "o9"), classes=labels, model_top_k=3, progress=False)


def test_inspect_shows_how_a_streaming_file_is_read(stream_file):
    from vidbatch.apps.describe import describe

    model, labels = stream_file
    text = describe(model, classes=labels)
    assert "streaming:     stateful (signature 'serving_default': image [1, 1, 32, 32, 3] float32 [0, 1], 3 state" in text
    assert "3 pooled features" in text and "trained at:    5 sampled frames/s" in text


def test_a_frame_encoder_is_not_taken_for_a_streaming_model(tmp_path):
    """The router tells them apart by the signature: one input is a frame model, state beside it a video model."""
    from vidbatch.model.encoder import TFLiteEncoder, load_encoder

    path = make_tflite_encoder(str(tmp_path / "enc.tflite"))
    assert isinstance(load_encoder(open(path, "rb").read(), "tflite", path), TFLiteEncoder)


def test_a_streaming_video_model_is_an_encoder_for_a_trained_head(stream_file, tmp_path, capsys):
    """`train sequence --encoder STREAM.tflite`: a linear head reads the pooled features (the state's head pool)
    and the logits per sampled frame; the bundle carries the encoder (sha256-checked) and labels with nothing
    else; --embeddings writes the pooled features."""
    from vidbatch.apps.synth import SynthSpec, make_dataset
    from vidbatch.apps.train.encoded import TRAINED_STATE_RESET_S
    from vidbatch.apps.train.trainer import TrainConfig, train

    manifest = make_dataset(str(tmp_path / "data"), videos_per_class=4, seed=3,
                            spec=SynthSpec(width=96, height=72, seconds=2.0))
    bundle = str(tmp_path / "bundle")
    metrics = train(TrainConfig(data=manifest, out=bundle, kind="sequence", encoder=stream_file[0], epochs=40,
                                feature_cache=None, test_fraction=0.25, learning_rate=3e-3))
    import keras

    head = keras.saving.load_model(os.path.join(bundle, "model.keras"), safe_mode=True)
    assert [layer.name for layer in head.layers] == ["features", "standardise", "probs"]
    assert metrics["encoder"]["features"] == 3 and metrics["config"]["fps"] == 5.0  # the logits (`head_input`)
    spec = json.load(open(os.path.join(bundle, "bundle.json")))
    assert spec["kind"] == "frame" and spec["sample_fps"] == 5.0 and spec["encoder"]["features"] == 3
    assert spec["extra"]["state_reset_s"] == TRAINED_STATE_RESET_S  # labeling starts the state over as training did
    assert spec["extra"]["state_weights"] == "window_end"  # ...and weighs frames as the head was trained
    result = vidbatch.label(manifest, bundle, str(tmp_path / "out"), progress=False, embeddings=True)
    summary = result.summary_frame()
    assert result.ok == 12 and (summary.pred_label == summary.label).mean() >= 0.9, summary[["label", "pred_label"]]
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["model"]["streaming"]["head_input"] == "logits" and run["config"]["fps"] == 5.0
    from vidbatch.cli import main  # the command says where the video model's own classes could help

    capsys.readouterr()
    assert main(["train", "sequence", "--data", manifest, "--encoder", stream_file[0], "--out", str(tmp_path / "b2"),
                 "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    # measured on its split, then trained again on all 12 (the bundle's head): no heldout.csv; --no-refit keeps one
    assert "then trained again on all 12 videos" in printed and "heldout.csv" not in os.listdir(tmp_path / "b2")
    assert main(["train", "sequence", "--data", manifest, "--encoder", stream_file[0], "--out", str(tmp_path / "b3"),
                 "--epochs", "1", "--no-refit"]) == 0
    assert "trained again" not in capsys.readouterr().out and "heldout.csv" in os.listdir(tmp_path / "b3")
    assert run["config"]["state_reset_s"] == TRAINED_STATE_RESET_S and run["config"]["state_weights"] == "window_end"
    embeddings = pd.read_parquet(tmp_path / "out" / "embeddings")
    assert len(embeddings) == 12 and len(embeddings.embedding[0]) == 3
    from vidbatch.apps.describe import describe_bundle

    assert ("trained at:    5 sampled frames/s, the state starting over every 10 s inside a shot; a video's label "
            "weighs the last frame before each restart") in describe_bundle(bundle)
    # the encoder is checked against the sidecar's sha256, as for any encoder bundle
    with open(os.path.join(bundle, "encoder.tflite"), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelBundleError, match="does not match the sha256"):
        vidbatch.label(manifest, bundle, str(tmp_path / "again"), progress=False)



def test_a_trained_head_mixed_with_the_models_own_classes(stream_file, tmp_path):
    """`train sequence --prior-map --prior-classes`: the head reads the pooled features and the logits (here
    `head_input="both"`), and the bundle averages its probabilities with the label map's zero-shot ones, as training
    evaluated it; a head on the pooled features alone has no logits to take a prior from."""
    from vidbatch.apps.synth import SynthSpec, make_dataset
    from vidbatch.apps.train.trainer import TrainConfig, train
    from vidbatch.model.bundle import load_bundle
    from vidbatch.stages.classify import Predictor

    manifest = make_dataset(str(tmp_path / "data"), videos_per_class=2, seed=5,
                            spec=SynthSpec(width=96, height=72, seconds=2.0))
    prior_map = tmp_path / "map.json"
    prior_map.write_text(json.dumps({"ball": ["ball"], "box": ["box"], "waves": ["waves"]}))
    bundle = str(tmp_path / "bundle")
    config = dict(data=manifest, out=bundle, kind="sequence", encoder=stream_file[0], epochs=5, feature_cache=None,
                  test_fraction=0.34, prior_map=str(prior_map), prior_classes=stream_file[1], prior_weight=0.25,
                  head_input="both")
    with pytest.raises(vidbatch.ConfigError, match="Invalid `head_input`.*logits"):
        train(TrainConfig(**{**config, "head_input": "pooled", "out": str(tmp_path / "b0")}))
    with pytest.raises(vidbatch.ConfigError, match="Invalid `head_input`.*Received: head_input='all'"):
        TrainConfig(**{**config, "head_input": "all"})
    train(TrainConfig(**config))
    spec = json.load(open(os.path.join(bundle, "bundle.json")))
    assert spec["encoder"]["head_input"] == "both" and spec["encoder"]["features"] == 3 + 3
    assert spec["encoder"]["prior"]["weight"] == 0.25 and spec["encoder"]["prior"]["classes"] == ["ball", "box", "waves"]
    loaded = load_bundle(bundle)
    assert any("averaged with its video model's own (0.75 and 0.25)" in note for note in loaded.notes)
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), np.uint8)
    mixed = Predictor(loaded, batch_size=4).predict(frames)
    # by hand: the head on [pooled, logits], and the softmax of the logits (the map is the identity here)
    encoder = loaded.encoder
    inputs = encoder.encode(frames)
    head = np.asarray(loaded.model.predict(inputs, verbose=0))
    logits = inputs[:, 3:]
    prior = np.exp(logits - logits.max(axis=1, keepdims=True))
    prior /= prior.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(mixed, 0.75 * head + 0.25 * prior, atol=1e-5)
    result = vidbatch.label(manifest, bundle, str(tmp_path / "out"), progress=False)
    assert result.ok == 6
    # a map naming a class the model does not have, or not every training class, is refused before any encoding
    prior_map.write_text(json.dumps({"ball": ["ball"], "box": ["bus"], "waves": ["waves"]}))
    with pytest.raises(ModelBundleError, match="bus"):
        train(TrainConfig(**{**config, "out": str(tmp_path / "b2")}))
    prior_map.write_text(json.dumps({"ball": ["ball"], "box": ["box"]}))
    with pytest.raises(ModelBundleError, match="Missing: \\['waves'\\]"):
        train(TrainConfig(**{**config, "out": str(tmp_path / "b3")}))
    prior_map.write_text('{"ball": ["ball"], "box": ["box"], "waves": ["waves"], "box": ["waves"]}')
    with pytest.raises(ModelBundleError, match="Invalid `prior_map`.*names 'box' twice"):
        train(TrainConfig(**{**config, "out": str(tmp_path / "b4")}))
    with pytest.raises(ConfigError, match="prior_classes"):
        TrainConfig(**{**config, "prior_classes": None})

def _ucf(tmp_path, names):
    if not (os.path.exists(MOVINET) and os.path.exists(os.path.join(UCF, "manifest.csv"))):
        pytest.skip(f"shared MoViNet weights or UCF101 clips not present under {SHARED_DATA}")
    manifest = tmp_path / "ucf.csv"
    pd.DataFrame([{"uri": os.path.join(UCF, n.split("_")[1], n), "label": n.split("_")[1]} for n in names]
                 ).to_csv(manifest, index=False)
    return str(manifest)


CLIPS = ["v_ApplyLipstick_g08_c01.avi", "v_BaseballPitch_g08_c01.avi", "v_BalanceBeam_g08_c01.avi",
         "v_ApplyEyeMakeup_g10_c02.avi"]


@pytest.mark.shared_data
def test_movinet_names_the_kinetics_action_of_shared_ucf101_clips(tmp_path):
    manifest = _ucf(tmp_path, CLIPS)
    result = vidbatch.label(manifest, MOVINET, str(tmp_path / "out"), classes=KINETICS, progress=False)
    summary = result.summary_frame().set_index("label")
    assert result.ok == 4
    assert summary.pred_label["ApplyLipstick"] == "putting on lipstick"
    assert summary.pred_label["BaseballPitch"] in ("catching or throwing baseball", "hitting baseball")
    assert summary.pred_label["ApplyEyeMakeup"] in ("putting on eyeliner", "putting on mascara", "putting on foundation")
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["model"]["streaming"]["state_tensors"] == 43 and run["model"]["streaming"]["pooled_features"] == 480


@pytest.mark.shared_data
def test_a_label_map_turns_kinetics_actions_into_ucf101_classes(tmp_path):
    manifest = _ucf(tmp_path, CLIPS)
    result = vidbatch.label(manifest, MOVINET, str(tmp_path / "out"), classes=KINETICS, label_map=UCF_MAP,
                            label_map_rest="drop", progress=False)
    summary = result.summary_frame()
    assert (summary.pred_label == summary.label).all(), summary[["label", "pred_label"]]


@pytest.mark.shared_data
def test_the_map_of_all_ucf101_classes_labels_among_80(tmp_path):
    """`examples/ucf101_all_from_kinetics600.json`: 80 UCF101 classes, each from Kinetics-600 classes of its own;
    three clips of mapped classes get their class of the 80, and `--model-top-k` says what the model saw."""
    full_map = os.path.join(os.path.dirname(UCF_MAP), "ucf101_all_from_kinetics600.json")
    manifest = _ucf(tmp_path, [c for c in CLIPS if "BalanceBeam" not in c])  # Kinetics has no balance beam
    kinetics = tuple(n for n in open(KINETICS).read().splitlines() if n)
    assert len(LabelMap.from_json(open(full_map).read(), kinetics).targets) == 80
    result = vidbatch.label(manifest, MOVINET, str(tmp_path / "out"), classes=KINETICS, label_map=full_map,
                            label_map_rest="drop", model_top_k=3, progress=False)
    summary = result.summary_frame()
    assert (summary.pred_label == summary.label).all(), summary[["label", "pred_label"]]
    assert summary.set_index("label").model_top_k["ApplyLipstick"][0]["label"] == "putting on lipstick"


def test_pack_makes_a_bundle_that_labels_with_nothing_else(stream_file, synth_set, tmp_path):
    """`vidbatch pack FILE --classes LABELS --out DIR`: the folder labels as the file with its classes did (same
    labels and scores), with the rate and reset period it recorded; a folder that is not empty, settings for a
    frame classifier and a file that is not a pretrained classifier are refused (exit 2)."""
    from vidbatch.apps.pack import pack
    from vidbatch.cli import main

    model, labels = stream_file
    folder = str(tmp_path / "packed")
    assert main(["pack", model, "--classes", labels, "--out", folder, "--state-reset-s", "2"]) == 0
    spec = json.load(open(os.path.join(folder, "bundle.json")))
    assert spec["classes"] == ["ball", "box", "waves"] and spec["sample_fps"] == 5.0 and spec["outputs"] == "logits"
    assert spec["extra"]["state_reset_s"] == 2.0 and any("streaming" in n for n in spec["extra"]["assumed"])
    direct = vidbatch.label(synth_set, model, str(tmp_path / "direct"), classes=labels, progress=False,
                            state_reset_s=2).summary_frame().sort_values("video_id").reset_index(drop=True)
    result = vidbatch.label(synth_set, folder, str(tmp_path / "out"), progress=False)
    packed = result.summary_frame().sort_values("video_id").reset_index(drop=True)
    assert result.ok == 6 and packed.pred_label.tolist() == direct.pred_label.tolist()
    np.testing.assert_allclose(packed.pred_score, direct.pred_score, atol=1e-5)
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["config"]["fps"] == 5.0 and run["config"]["state_reset_s"] == 2.0
    assert main(["pack", model, "--classes", labels, "--out", folder]) == 2  # not empty
    with pytest.raises(ConfigError, match="pretrained classifier file"):
        pack(folder, labels, str(tmp_path / "again"))
    from vidbatch.model.encoder import open_encoder

    tiny = make_tflite_encoder(str(tmp_path / "frame.tflite"))
    (tmp_path / "names.txt").write_text("\n".join(f"c{i}" for i in range(open_encoder(tiny).features)))
    with pytest.raises(ConfigError, match="streaming video model's settings"):
        pack(tiny, str(tmp_path / "names.txt"), str(tmp_path / "frame"), fps=8.0)
