"""Long videos as time ranges: a video cut anywhere, assembled range by range and merged, equals the video whole."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidbatch.core.config import LabelConfig
from vidbatch.io import ranges
from vidbatch.model.streaming import ResetRule
from vidbatch.stages.assemble import assemble_ok, assemble_range
from vidbatch.stages.ranges import RangeSplitter, default_range_items

INFO = {"fps": 10.0, "frames_decoded": 100, "duration_s": 99.0, "width": 8, "height": 8}


def config(**options):
    return LabelConfig(manifest="m.csv", model="m", out="o", **options)


def a_video(seed, items, classes, cut_rate):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(classes) * 0.5, size=items).astype(np.float32)
    probs[items // 2:] = np.roll(probs[items // 2:], 1, axis=1)  # the label changes half way: segments to merge
    cuts = rng.random(items) < cut_rate
    cuts[0] = False  # the shot detector never marks the first item
    stamps = np.cumsum(rng.uniform(0.2, 0.7, items))
    return {"frames": np.arange(items, dtype=np.uint8)[:, None], "frame_index": np.arange(items) * 3 + 1,
            "timestamp_s": stamps, "shot_cut": cuts}, probs


def split_and_merge(arrays, probs, options, range_items, chunk, embeddings=None, model_probs=None):
    """What the Ray engine does to a video: cut it as it decodes, assemble each unit, commit, merge."""
    streaming = options.state_reset_s is not None  # a unit then starts at the last reset point before it
    splitter = RangeSplitter(range_items=range_items, overlap=options.window - 1,
                             reset=ResetRule(options.reset_every()) if streaming else None)
    units = []
    for start in range(0, len(probs), chunk):
        units += splitter.push({name: values[start:start + chunk] for name, values in arrays.items()})
    units.append(splitter.finish())
    row = {int(i): r for r, i in enumerate(arrays["frame_index"])}
    outcomes = []
    for unit in units:
        rows = [row[int(i)] for i in unit.frame_index]
        outcomes.append(assemble_range("v", "k", CLASSES[: probs.shape[1]], unit, probs[rows], INFO, options, "m", 1.0,
                                       embeddings=None if embeddings is None else embeddings[rows],
                                       model_probs=None if model_probs is None else model_probs[rows],
                                       model_classes=MODEL_CLASSES))
    parts = {o.record["range"]: {**o.record, "key": o.key} for o in outcomes}
    assert ranges.complete(parts)
    frames = pa.concat_tables([o.frames for o in outcomes if o.frames is not None])
    return units, ranges.merge(parts), frames


CLASSES = ["a", "b", "c", "d"]
MODEL_CLASSES = ["m0", "m1", "m2", "m3", "m4", "m5"]
"""A label map's model classes (`--model-top-k` keeps them for audit)."""


def assert_same(whole, merged, frames):
    w = whole.frames.to_pandas()
    f = frames.to_pandas()
    exact = ["video_id", "frame_index", "timestamp_s", "raw_label", "smoothed_label", "shot_index"]
    assert f[exact].equals(w[exact])
    np.testing.assert_allclose(f.smoothed_score, w.smoothed_score, atol=1e-6)
    np.testing.assert_array_equal(f.raw_score, w.raw_score)
    for name in ("top_k", "probs", "model_top_k"):
        assert (name in f) == (name in w), name
        if name in w:
            assert [[d["label"] for d in row] for row in f[name]] == [[d["label"] for d in row] for row in w[name]] \
                if name != "probs" else np.allclose(np.stack(f[name]), np.stack(w[name]))
    record = whole.record
    if record["model_top_k"] is None:
        assert merged["model_top_k"] is None
    else:  # the model's own classes, weighed as the video's label
        assert [t["label"] for t in merged["model_top_k"]] == [t["label"] for t in record["model_top_k"]]
        np.testing.assert_allclose([t["score"] for t in merged["model_top_k"]],
                                   [t["score"] for t in record["model_top_k"]], atol=1e-6)
    for name in ("status", "pred_label", "frames_classified", "shots", "frames_decoded", "duration_s"):
        assert merged[name] == record[name], name
    assert merged["pred_score"] == pytest.approx(record["pred_score"], abs=1e-6)
    assert [t["label"] for t in merged["top_k"]] == [t["label"] for t in record["top_k"]]
    assert len(merged["segments"]) == len(whole.segments)
    for m, w_ in zip(merged["segments"], whole.segments):
        assert {k: m[k] for k in ("segment_index", "start_s", "end_s", "label")} == \
               {k: w_[k] for k in ("segment_index", "start_s", "end_s", "label")}
        assert m["score"] == pytest.approx(w_["score"], abs=1e-6) and m["margin"] == pytest.approx(w_["margin"], abs=1e-6)
    assert len(merged["shots_table"]) == len(whole.shots)
    for m, w_ in zip(merged["shots_table"], whole.shots):
        assert {k: m[k] for k in ("shot_index", "start_s", "end_s", "label")} == \
               {k: w_[k] for k in ("shot_index", "start_s", "end_s", "label")}
        assert m["score"] == pytest.approx(w_["score"], abs=1e-6)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), items=st.integers(1, 70), classes=st.integers(2, 4), window=st.integers(1, 9),
       range_items=st.integers(1, 12), chunk=st.integers(1, 9), cut_rate=st.sampled_from([0.0, 0.05, 0.3]),
       frame_top_k=st.sampled_from([0, 2]), keep_probs=st.booleans(), video_threshold=st.sampled_from([None, 0.4]),
       frame_threshold=st.sampled_from([None, 0.5]), state_reset_s=st.sampled_from([None, 0.0, 0.6]),
       model_top_k=st.sampled_from([0, 3]), state_weights=st.sampled_from([None, "window_end"]))
def test_a_video_cut_anywhere_equals_it_whole(seed, items, classes, window, range_items, chunk, cut_rate, frame_top_k,
                                              keep_probs, video_threshold, frame_threshold, state_reset_s, model_top_k,
                                              state_weights):
    """Any video, cut anywhere, for a frame model and for a streaming one (whose units start at reset points and
    whose items weigh by their state's context, or only at the ends of reset windows, which a range's last item
    may or may not be), merges to what the video whole gets."""
    options = config(window=window, top_k=2, frame_top_k=frame_top_k, keep_probs=keep_probs,
                     video_threshold=video_threshold, frame_threshold=frame_threshold, state_reset_s=state_reset_s,
                     fps=5.0, model_top_k=model_top_k, label_map="map.json" if model_top_k else None,
                     state_weights=state_weights)
    arrays, probs = a_video(seed, items, classes, cut_rate)
    model_probs = (np.random.default_rng(seed + 1).dirichlet(np.ones(len(MODEL_CLASSES)), size=items).astype(np.float32)
                   if model_top_k else None)
    whole = assemble_ok("v", "k", CLASSES[:classes], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options,
                        "m", 1.0, shot_cut=arrays["shot_cut"], model_probs=model_probs, model_classes=MODEL_CLASSES)
    assert (whole.record["model_top_k"] is None) == (not model_top_k)
    units, merged, frames = split_and_merge(arrays, probs, options, range_items, chunk, model_probs=model_probs)
    assert len(units) == max(1, -(-items // range_items))
    assert all(len(u) - u.overlap <= range_items for u in units)
    assert_same(whole, merged, frames)


def test_a_long_video_splits_into_ranges_with_overlap_and_exact_shot_numbers():
    options = config(window=4)
    arrays, probs = a_video(1, 50, 3, 0.1)
    units, merged, frames = split_and_merge(arrays, probs, options, range_items=12, chunk=5)
    assert [u.range_index for u in units] == [0, 1, 2, 3, 4] and [u.last for u in units] == [False] * 4 + [True]
    assert [u.overlap for u in units] == [0, 3, 3, 3, 3]
    assert units[1].frame_index[0] == arrays["frame_index"][9]  # 12 own items, then the 3 before range 1's first
    assert [u.shot_base for u in units] == [int(arrays["shot_cut"][: 12 * i - (3 if i else 0)].sum()) for i in range(5)]
    assert len({u.attempt for u in units}) == 1
    whole = assemble_ok("v", "k", CLASSES[:3], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options, "m",
                        1.0, shot_cut=arrays["shot_cut"])
    assert whole.record["shots"] > 2  # the cuts land in several ranges
    assert_same(whole, merged, frames)


def test_embeddings_merge_to_the_video_mean():
    options = config(window=3)
    arrays, probs = a_video(2, 30, 2, 0.0)
    vectors = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    whole = assemble_ok("v", "k", CLASSES[:2], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options, "m",
                        1.0, shot_cut=arrays["shot_cut"], embeddings=vectors)
    _, merged, frames = split_and_merge(arrays, probs, options, 7, 4, embeddings=vectors)
    np.testing.assert_allclose(merged["embedding"], whole.embedding, atol=1e-5)
    assert frames.column("embedding").to_pylist() == whole.frames.column("embedding").to_pylist()


def test_an_incomplete_set_is_not_a_video():
    options = config(window=2)
    arrays, probs = a_video(3, 20, 2, 0.0)
    splitter = RangeSplitter(range_items=6, overlap=1)
    units = splitter.push(arrays) + [splitter.finish()]
    parts = {u.range_index: {**assemble_range("v", "k", CLASSES[:2], u, probs[: len(u)], INFO, options, "m", 0).record,
                             "key": "k"} for u in units}
    assert ranges.complete(parts)
    del parts[1]
    assert not ranges.complete(parts)


def test_an_empty_video_is_one_empty_whole_unit():
    splitter = RangeSplitter(range_items=5, overlap=2)
    unit = splitter.finish()
    assert unit.whole and len(unit) == 0


def test_bad_sizes_are_refused_and_the_default_fits_the_budget():
    with pytest.raises(ValueError, match="range_items"):
        RangeSplitter(range_items=0, overlap=1)
    assert default_range_items(224 * 224 * 3, overlap=7) == 445
    assert default_range_items(10**9, overlap=7) == 32  # a huge item still makes ranges longer than their overlap


def test_a_streaming_models_items_weigh_by_the_frames_their_state_has_seen():
    """A streaming model's head is a running mean since its state's last reset: the video's and each shot's label
    weight an item by how many frames it rests on (1, 2, ... from each reset: the video's start, a cut, and
    every `state_reset_s` of sampled frames); a frame model's items weigh the same."""
    arrays, probs = a_video(seed=5, items=23, classes=3, cut_rate=0.0)
    arrays["shot_cut"][[9, 17]] = True
    weights, since = [], 0
    for i, cut in enumerate(arrays["shot_cut"]):
        since = 1 if i == 0 or cut or since == 4 else since + 1  # a reset every 4 items: 0.8 s at 5 fps
        weights.append(since)
    assert weights[:10] == [1, 2, 3, 4, 1, 2, 3, 4, 1, 1]
    for options, expected in ((config(fps=5.0), np.mean(probs, axis=0, dtype=np.float64)),
                              (config(fps=5.0, state_reset_s=0.8), np.average(probs, axis=0, weights=weights))):
        whole = assemble_ok("v", "k", CLASSES[:3], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options,
                            "m", 1.0, shot_cut=arrays["shot_cut"])
        assert whole.record["top_k"][0]["score"] == pytest.approx(expected.max(), abs=1e-6)
        assert whole.record["pred_label"] == CLASSES[int(expected.argmax())]
        shot = np.average(probs[9:17], axis=0, weights=None if options.state_reset_s is None else weights[9:17])
        assert whole.shots[1]["score"] == pytest.approx(shot.max(), abs=1e-6)
    np.testing.assert_array_equal(ResetRule(4).context(arrays["shot_cut"]), weights)


def test_window_end_weights_count_only_the_last_item_before_each_reset():
    """`state_weights="window_end"` (what a head trained on a streaming encoder's window ends asks for): the
    video's and each shot's label weigh only the item before each reset (a cut, the period) and the video's last
    one, each by the frames its window spans; a range whose last item is followed by a reset says so (`closes`)."""
    arrays, probs = a_video(seed=5, items=23, classes=3, cut_rate=0.0)
    arrays["shot_cut"][[9, 17]] = True
    rule = ResetRule(4)
    ends = rule.window_ends(arrays["shot_cut"])
    # resets at 0, 4, 8 (period), 9 (cut), 13 (period), 17 (cut), 21 (period): ends before each, and the last
    assert np.flatnonzero(ends).tolist() == [3, 7, 8, 12, 16, 20, 22]
    weights = rule.weights(arrays["shot_cut"], "window_end")
    assert weights[ends].tolist() == [4, 4, 1, 4, 4, 4, 2] and not weights[~ends].any()
    assert not rule.window_ends(arrays["shot_cut"][:22], closes=False)[-1]  # item 21 is no end: 22 follows it
    options = config(fps=5.0, state_reset_s=0.8, state_weights="window_end")
    whole = assemble_ok("v", "k", CLASSES[:3], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options,
                        "m", 1.0, shot_cut=arrays["shot_cut"])
    expected = np.average(probs, axis=0, weights=weights)
    assert whole.record["top_k"][0]["score"] == pytest.approx(expected.max(), abs=1e-6)
    shot = np.average(probs[9:17], axis=0, weights=weights[9:17])  # items 12 and 16 only
    assert whole.shots[1]["score"] == pytest.approx(shot.max(), abs=1e-6)
    # the splitter knows whether the item after a range starts over: ranges of 4 own items end at items 3, 7, 11,
    # 15, 19 and 22; items 4 and 8 are resets, 12, 16 and 20 are not, and 22 ends the video
    splitter = RangeSplitter(range_items=4, overlap=0, reset=rule)
    units = splitter.push(arrays) + [splitter.finish()]
    assert [int(u.frame_index[-1]) for u in units] == arrays["frame_index"][[3, 7, 11, 15, 19, 22]].tolist()
    assert [u.closes for u in units] == [True, True, False, False, False, True]
