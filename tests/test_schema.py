"""One schema module: the writer, the assembly stage and the manifest's reserved names all follow it."""

import pandas as pd
import pyarrow as pa
import pytest

from vidbatch import ManifestError
from vidbatch.io.manifest import Manifest
from vidbatch.io.schema import (
    FRAMES_SCHEMA,
    MANIFEST_COLUMNS,
    RESERVED_COLUMNS,
    SUMMARY_SCHEMA,
)


def test_reserved_columns_are_the_summary_columns_vidbatch_fills():
    assert set(RESERVED_COLUMNS) | set(MANIFEST_COLUMNS) == set(SUMMARY_SCHEMA.names)
    assert "shots" in RESERVED_COLUMNS  # missing once: a manifest `shots` column gave the summary two of them


@pytest.mark.parametrize("column", RESERVED_COLUMNS)
def test_a_manifest_column_named_like_an_output_column_is_refused(tmp_path, column):
    path = tmp_path / "m.csv"
    pd.DataFrame({"uri": ["a.mp4"], column: ["x"]}).to_csv(path, index=False)
    with pytest.raises(ManifestError) as info:
        Manifest.from_path(str(path))
    message = str(info.value)
    assert f"['{column}']" in message and "m.csv" in message and "rename" in message


def test_manifest_columns_that_pass_through_keep_their_names(tmp_path):
    manifest = Manifest.from_records([{"uri": "a.mp4", "label": "x", "group": "g1"}], base_dir=str(tmp_path))
    assert manifest.passthrough.column_names == ["video_id", "uri", "label", "group"]


def test_frames_schema_types():
    assert FRAMES_SCHEMA.field("frame_index").type == pa.int64() and FRAMES_SCHEMA.names[0] == "video_id"
