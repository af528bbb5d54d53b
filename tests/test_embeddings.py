"""--embeddings: per-item feature vectors in frames/ and each video's mean in embeddings/, read back by pandas."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import vidbatch
from tests.support.encoders import make_tflite_encoder
from vidbatch.model.bundle import BundleSpec, save_bundle
from vidbatch.model.encoder import open_encoder


def label(manifest, model, out, **kw):
    return vidbatch.label(str(manifest), str(model), str(out), progress=False, decode_workers=2, fps=5, window=4, **kw)


def test_embeddings_of_every_frame_and_each_video(synth_set, colour_bundle, tmp_path):
    result = label(synth_set, colour_bundle, tmp_path / "out", embeddings=True)
    assert result.ok == 6
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert len(frames.embedding.iloc[0]) == 3 and frames.embedding.iloc[0].dtype == np.float16
    videos = pd.read_parquet(tmp_path / "out" / "embeddings")
    assert sorted(videos.video_id) == sorted(frames.video_id.unique()) and videos.embedding.iloc[0].dtype == np.float32
    for row in videos.itertuples():
        mine = np.stack(frames[frames.video_id == row.video_id].embedding.to_numpy()).astype(np.float32)
        assert row.items == len(mine)
        np.testing.assert_allclose(row.embedding, mine.mean(axis=0), rtol=2e-3, atol=2e-3)
    # the per-video vectors find a video's own class: its nearest neighbour (cosine) shares its label
    summary = result.summary_frame().set_index("video_id")
    vectors = np.stack(videos.embedding.to_numpy())
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T - 2 * np.eye(len(unit))
    nearest = similarity.argmax(axis=1)
    labels = summary.loc[videos.video_id, "label"].to_numpy()
    assert (labels[nearest] == labels).all()
    # without the option, neither exists
    label(synth_set, colour_bundle, tmp_path / "plain")
    assert "embedding" not in pd.read_parquet(tmp_path / "plain" / "frames").columns
    assert not os.path.exists(tmp_path / "plain" / "embeddings")


def test_embeddings_resume_and_a_lost_commit_leaves_no_orphan(synth_set, colour_bundle, tmp_path):
    out = tmp_path / "out"
    label(synth_set, colour_bundle, out, embeddings=True, commit_videos=2)
    commits = sorted(os.listdir(out / "_vidbatch" / "commits"))
    record = json.load(open(out / "_vidbatch" / "commits" / commits[-1]))
    assert record["embeddings_file"].startswith("embeddings/part-")
    os.remove(out / "_vidbatch" / "commits" / commits[-1])  # as if killed between the shards and the record
    shutil.rmtree(out / "summary.parquet", ignore_errors=True)
    result = label(synth_set, colour_bundle, out, embeddings=True, commit_videos=2)
    assert result.resumed == 4 and result.ok == 6
    assert not os.path.exists(out / record["embeddings_file"])  # the orphan shard was removed
    videos = pd.read_parquet(out / "embeddings")
    assert len(videos) == 6 and videos.video_id.is_unique


def test_encoder_bundle_embeddings_are_the_encoder_features(synth_set, tmp_path):
    import keras

    encoder = open_encoder(make_tflite_encoder(str(tmp_path / "tiny.tflite")))
    inputs = keras.Input((encoder.features,))
    head = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    bundle = save_bundle(head, BundleSpec(classes=("ball", "box", "waves"), input_size=(32, 32)), str(tmp_path / "b"),
                         encoder=encoder)
    label(synth_set, bundle, tmp_path / "out", embeddings=True, shot_threshold=None)
    frames = pd.read_parquet(tmp_path / "out" / "frames")
    assert len(frames.embedding.iloc[0]) == encoder.features == 195
    run = json.load(open(tmp_path / "out" / "run.json"))
    assert run["config"]["embeddings"] is True and run["model"]["encoder"]["runtime"] == "litert"
    assert run["stages"]["layout"]["encoder"]["frames_encoded"] == len(frames)


@pytest.mark.parametrize("bad", ["--embeddings=yes"])
def test_cli_flag_is_a_switch(bad, synth_set, colour_bundle, tmp_path, capsys):
    from vidbatch.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["label", "--manifest", synth_set, "--model", colour_bundle, "--out", str(tmp_path / "o"), bad])
    assert exit_info.value.code == 2
