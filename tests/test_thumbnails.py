"""Thumbnails (`--thumbnails`): every segment gets one, the short ones included."""

import numpy as np
import pandas as pd

import vidbatch
from vidbatch.apps.synth import SynthSpec, make_dataset
from vidbatch.stages import thumbnails


def test_a_segment_without_a_kept_frame_gets_the_nearest_one():
    stamps = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    thumbs = np.array([b"a", b"", b"", b"d", b""], dtype=object)
    segments = [{"segment_index": 0, "start_s": 0.0, "end_s": 0.1}, {"segment_index": 1, "start_s": 0.1, "end_s": 0.25},
                {"segment_index": 2, "start_s": 0.25, "end_s": 0.5}]
    rows = thumbnails.per_segment("v", segments, stamps, thumbs)
    assert [r["jpeg"] for r in rows] == [b"a", b"d", b"d"]  # segment 1 holds no kept frame: its nearest, 0.3 s
    assert thumbnails.per_segment("v", segments, stamps, np.array([b""] * 5, dtype=object)) == []


def test_every_segment_has_a_thumbnail_even_one_sampled_frame_long(colour_bundle, tmp_path):
    """Flickering videos with no smoothing (window 1): many segments of a single sampled frame (0.2 s at 5 fps)."""
    manifest = make_dataset(str(tmp_path / "data"), classes=["ball", "box"], videos_per_class=1, seed=3,
                            spec=SynthSpec(width=96, height=72, seconds=4, flicker=0.3))
    out = tmp_path / "out"
    result = vidbatch.label(manifest, colour_bundle, str(out), fps=5, window=1, thumbnails=True, progress=False)
    assert result.ok == 2
    segments = pd.read_parquet(out / "segments.parquet")
    short = segments[segments.end_s - segments.start_s < 1.0]
    assert len(short) >= 4, "the flicker must make segments under a second"
    thumbs = pd.read_parquet(out / "thumbnails")
    assert len(thumbs) == len(segments)
    joined = segments.merge(thumbs, on=["video_id", "segment_index"])
    assert len(joined) == len(segments)
    assert ((joined.start_s <= joined.timestamp_s) & (joined.timestamp_s < joined.end_s + 1e-9)).all()
