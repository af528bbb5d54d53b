"""Every table vidbatch writes, defined once: summary, frames, segments, shots.

The writer, the assembly stage and the manifest's reserved column names are all
derived from these schemas, so adding a column is one edit here. The manifest
supplies `video_id` and `uri`; every other summary column is vidbatch's own, and a
manifest column with one of those names is refused (it would be written twice).
"""

from __future__ import annotations

import pyarrow as pa

TOP_K_TYPE = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
"""A ranked list of `{label, score}`: the summary's `top_k` and, with `--frame-top-k`, the frames'; with
`--model-top-k`, the model's own classes before the label map (`model_top_k`, for audit)."""

SUMMARY_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("decode_note", pa.string()),
        ("pred_label", pa.string()),
        ("pred_score", pa.float64()),
        ("top_k", TOP_K_TYPE),
        ("model_top_k", TOP_K_TYPE),  # --model-top-k with --label-map: the model's own best classes (else null)
        ("frames_decoded", pa.int64()),
        ("frames_classified", pa.int64()),
        ("shots", pa.int64()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("model", pa.string()),
        ("elapsed_s", pa.float64()),
    ]
)
"""`summary.parquet`: one row per manifest row, then the manifest's other columns."""

MANIFEST_COLUMNS = ("video_id", "uri")
"""Summary columns whose values come from the manifest."""

RESERVED_COLUMNS = tuple(name for name in SUMMARY_SCHEMA.names if name not in MANIFEST_COLUMNS)
"""Summary columns vidbatch fills: a manifest may not pass through a column of the same name."""

FRAMES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int64()),
        ("timestamp_s", pa.float64()),
        ("raw_label", pa.string()),
        ("raw_score", pa.float32()),
        ("smoothed_label", pa.string()),
        ("smoothed_score", pa.float32()),
        ("shot_index", pa.int32()),
    ]
)
"""`frames/`: one row per classified item (frame, or clip stamped with its last frame)."""

FRAMES_OPTIONAL_FIELDS = {
    "top_k": TOP_K_TYPE,  # --frame-top-k
    "model_top_k": TOP_K_TYPE,  # --model-top-k: the item's best model classes before the label map
    "probs": pa.list_(pa.float32()),  # every class's probability (keep_probs, used by `vidbatch eval`)
}
"""Frames columns added only when asked for, after the fixed ones."""


def frame_embedding_type(features: int) -> pa.DataType:
    """`frames/` column `embedding` (--embeddings): each item's feature vector, half precision (plenty for cosine
    search, half the bytes)."""
    return pa.list_(pa.float16(), features)


def embeddings_schema(features: int) -> pa.Schema:
    """`embeddings/` (--embeddings): one row per video, the mean of its items' feature vectors."""
    return pa.schema([("video_id", pa.string()), ("items", pa.int32()), ("embedding", pa.list_(pa.float32(), features))])

SEGMENTS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("segment_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("margin", pa.float64()),
    ]
)
"""`segments.parquet`: runs of frames with one smoothed label, never across a shot cut. `score` is the mean
smoothed score of the label, `margin` the mean lead of the top class over the second (small: a doubtful label)."""

SHOTS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("label", pa.string()),
        ("score", pa.float64()),
    ]
)
"""`shots.parquet`: one row per detected shot, labeled by the argmax of its mean probabilities."""

THUMBNAILS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("segment_index", pa.int32()),
        ("timestamp_s", pa.float64()),
        ("jpeg", pa.binary()),
    ]
)
"""`thumbnails/` (with `--thumbnails`): per segment, a small JPEG of the sampled frame nearest its middle."""
