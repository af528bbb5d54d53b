"""Helpers for comparing engines' outputs."""

import numpy as np
import pandas as pd

TIMING = ["elapsed_s"]


def tables(out):
    summary = pd.read_parquet(f"{out}/summary.parquet").drop(columns=TIMING)
    frames = pd.read_parquet(f"{out}/frames").sort_values(["video_id", "frame_index"]).reset_index(drop=True)
    segments = pd.read_parquet(f"{out}/segments.parquet").sort_values(["video_id", "segment_index"]).reset_index(drop=True)
    return summary, frames, segments


def assert_same_answers(out_a, out_b):
    """Same labels, frames and segments; scores equal up to float noise across batch compositions."""
    (sa, fa, ga), (sb, fb, gb) = tables(out_a), tables(out_b)
    exact = ["video_id", "status", "error", "pred_label", "frames_decoded", "frames_classified", "duration_s", "fps",
             "width", "height"]
    pd.testing.assert_frame_equal(sa[exact], sb[exact])
    pd.testing.assert_series_equal(sa["pred_score"], sb["pred_score"], atol=1e-4, check_exact=False)
    labels = ["video_id", "frame_index", "timestamp_s", "raw_label", "smoothed_label"]
    pd.testing.assert_frame_equal(fa[labels], fb[labels])
    pd.testing.assert_series_equal(fa["smoothed_score"], fb["smoothed_score"], atol=1e-4, check_exact=False)
    pd.testing.assert_frame_equal(ga.drop(columns=["score"]), gb.drop(columns=["score"]))


def assert_same_embeddings(out_a, out_b, videos):
    """The same per-video mean vectors (embeddings/) from two runs, for `videos` videos."""
    a, b = (pd.read_parquet(f"{out}/embeddings").sort_values("video_id") for out in (out_a, out_b))
    assert list(a.video_id) == list(b.video_id) and len(a) == videos
    np.testing.assert_allclose(np.stack(a.embedding.to_numpy()), np.stack(b.embedding.to_numpy()), atol=1e-4)
