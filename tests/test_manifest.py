import os

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidbatch import ManifestError
from vidbatch.io.manifest import Manifest, derive_video_id, output_key


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "w":
        path.write_text(text)
    else:
        path.write_bytes(text)
    return str(path)


def test_csv_with_passthrough_and_relative_uris(tmp_path):
    path = write(tmp_path, "m.csv", "uri,label,weight\nvideos/a.mp4,ball,1.5\n/abs/b.mp4,box,2\n")
    manifest = Manifest.from_path(path)
    assert [t.location for t in manifest.tasks] == [str(tmp_path / "videos" / "a.mp4"), "/abs/b.mp4"]
    assert [t.uri for t in manifest.tasks] == ["videos/a.mp4", "/abs/b.mp4"]
    table = manifest.passthrough
    assert table.column_names == ["video_id", "uri", "label", "weight"]
    assert table.column("weight").to_pylist() == [1.5, 2.0]
    assert manifest.has_labels


def test_derived_ids_are_stable_and_unique(tmp_path):
    path = write(tmp_path, "m.csv", "uri\na/clip.mp4\nb/clip.mp4\n")
    first = [t.video_id for t in Manifest.from_path(path).tasks]
    second = [t.video_id for t in Manifest.from_path(path).tasks]
    assert first == second and len(set(first)) == 2 and all(i.startswith("clip-") for i in first)
    assert derive_video_id("a/clip.mp4") == first[0]


def test_parquet_from_memory_url_with_odd_types():
    table = pa.table({
        "uri": ["s3://b/x.mp4", "s3://b/y.mp4"],
        "video_id": ["x", "y"],
        "tags": [["a", "b"], []],
        "meta": [{"k": 1}, {"k": 2}],
        "when": pa.array([1, 2], pa.timestamp("s")),
    })
    with fsspec.open("memory://manifests/m.parquet", "wb") as handle:
        pq.write_table(table, handle)
    manifest = Manifest.from_path("memory://manifests/m.parquet")
    assert [t.video_id for t in manifest.tasks] == ["x", "y"]
    assert manifest.passthrough.column("tags").to_pylist() == [["a", "b"], []]
    assert pa.types.is_timestamp(manifest.passthrough.schema.field("when").type)  # Parquet stores seconds as ms


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("m.csv", "path\na.mp4\n", r"no 'uri' column"),
        ("m.csv", "uri\n", r"empty: it has a header but no rows"),
        ("m.csv", "", r"empty"),
        ("m.csv", "uri,video_id\na.mp4,x\nb.mp4,x\n", r"row 2, column 'video_id': duplicate 'x' \(also row 1\)"),
        ("m.csv", "uri,label\na.mp4,x\n,y\n", r"row 2, column 'uri': blank"),
        ("m.csv", "uri,video_id\na.mp4,\n", r"row 1, column 'video_id': blank"),
        ("m.csv", "uri,status\na.mp4,x\n", r"collide"),
        ("m.json", "{}", r"unknown format"),
    ],
)
def test_bad_manifests_name_file_row_and_column(tmp_path, name, content, match):
    path = write(tmp_path, name, content)
    with pytest.raises(ManifestError, match=match) as info:
        Manifest.from_path(path)
    assert os.path.basename(path) in str(info.value)


def test_non_utf8_csv(tmp_path):
    path = write(tmp_path, "m.csv", "uri\nvid\xe9o.mp4\n".encode("latin-1"), mode="b")
    with pytest.raises(ManifestError, match=r"not UTF-8 text \(invalid byte at line 2\)"):
        Manifest.from_path(path)
    # in a column that passes through (Arrow would read it as bytes): refused the same way
    path = write(tmp_path, "n.csv", "uri,label\na.mp4,ok\nb.mp4,caf\xe9\n".encode("latin-1"), mode="b")
    with pytest.raises(ManifestError, match=r"not UTF-8 text \(invalid byte at line 3\)"):
        Manifest.from_path(path)


def test_parquet_that_is_not_parquet(tmp_path):
    path = write(tmp_path, "m.parquet", "uri\na.mp4\n")
    with pytest.raises(ManifestError, match="not a valid Parquet file"):
        Manifest.from_path(path)


def test_missing_and_folder_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        Manifest.from_path(str(tmp_path / "none.csv"))
    with pytest.raises(ManifestError, match="it is a folder"):
        Manifest.from_path(str(tmp_path))
    with pytest.raises(ManifestError, match="unknown URL scheme"):
        Manifest.from_path("zzz://x.csv")


def test_unicode_and_spaces_in_ids_and_paths(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("uri,video_id\nvidéos/été 1.mp4,clip été 1\n", encoding="utf-8")
    task = Manifest.from_path(str(path)).tasks[0]
    assert task.location == str(tmp_path / "vidéos" / "été 1.mp4")
    assert task.video_id == "clip été 1"


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/abs/path", "a/b\\c", "con\x00trol\n", "..", ".", "", "\u202e", "x" * 500])
def test_output_key_is_safe(hostile):
    key = output_key(hostile)
    assert "/" not in key and "\\" not in key and ".." not in key.split("-")[0] and key.isprintable()
    assert not key.startswith(".") and 0 < len(key) <= 80


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_output_key_property(video_id):
    key = output_key(video_id)
    assert key == os.path.basename(key) and key not in (".", "..") and not key.startswith(".")
    assert all(c.isalnum() and c.isascii() or c in "._-" for c in key)
    assert os.path.normpath(os.path.join("/out/frames", key)).startswith("/out/frames/")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=20, unique=True))
def test_output_keys_never_collide(ids):
    assert len({output_key(i) for i in ids}) == len(ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
                .filter(lambda s: s.strip() and s == s.strip()), min_size=1, max_size=10, unique=True))
def test_manifest_roundtrip_property(ids):
    table = pa.table({"uri": [f"v{i}.mp4" for i in range(len(ids))], "video_id": ids})
    manifest = Manifest(table, source="<prop>", base_dir="/base")
    assert [t.video_id for t in manifest.tasks] == ids
    assert manifest.passthrough.column("video_id").to_pylist() == ids


@pytest.mark.parametrize("name", ["vidoe_id", "VideoID", "video-id", "vid_id"])
def test_a_misspelt_video_id_column_is_warned_about(tmp_path, caplog, name):
    path = tmp_path / "m.csv"
    path.write_text(f"uri,{name}\na.mp4,x\n")
    with caplog.at_level("WARNING", logger="vidbatch"):
        Manifest.from_path(str(path))
    assert [r for r in caplog.records if repr(name) in r.getMessage() and "video_id" in r.getMessage()]


def test_unrelated_columns_draw_no_warning(tmp_path, caplog):
    path = tmp_path / "m.csv"
    path.write_text("uri,label,group,clip\na.mp4,x,g1,c1\n")
    with caplog.at_level("WARNING", logger="vidbatch"):
        Manifest.from_path(str(path))
    assert not caplog.records


def _read_whole(path):
    """The manifest as the whole-file read makes it (what a streamed one must equal)."""
    from vidbatch.io.manifest import _parse

    return Manifest(_parse(open(path, "rb").read(), path), source=path, base_dir=os.path.dirname(path))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_manifest_file_is_streamed_and_equals_the_whole_read(tmp_path, kind):
    """Opened, a large manifest file is validated in one pass and held by its row count alone; its batches, in
    order, and the tasks and passthrough columns read from them equal the whole-file read's."""
    from vidbatch.io import manifest as manifest_module
    from vidbatch.io.manifest import StreamedManifest

    rows = 3 * manifest_module.MAP_ROWS // 2 if kind == "parquet" else 60000  # several CSV blocks / batches
    text = "uri,label,n\n" + "".join(f"v/{i}.mp4,{'ab'[i % 2]},{i}\n" for i in range(rows))
    path = write(tmp_path, "m.csv", text)
    if kind == "parquet":
        pq.write_table(_read_whole(path).passthrough.drop_columns(["video_id"]), str(tmp_path / "m.parquet"))
        path = str(tmp_path / "m.parquet")
    streamed = Manifest.from_path(path)
    assert isinstance(streamed, StreamedManifest) and len(streamed) == rows and streamed._whole is None
    batches = list(streamed.batches())
    assert len(batches) > 1 and streamed._whole is None  # read again, never held
    assert [b.start for b in batches] == [sum(len(c.tasks) for c in batches[:i]) for i in range(len(batches))]
    whole = _read_whole(path)
    assert pa.concat_tables([b.passthrough for b in batches]).equals(whole.passthrough)
    last = batches[-1].tasks[-1]
    assert (last.row, last.video_id, last.location) == (rows - 1, whole.tasks[-1].video_id, whole.tasks[-1].location)
    assert streamed.tasks.keys().equals(whole.tasks.keys()) and streamed.passthrough.equals(whole.passthrough)
    slices = list(streamed.passthrough_slices(1000))
    assert [s.num_rows for s in slices] == [1000] * (rows // 1000) + ([rows % 1000] if rows % 1000 else [])


def test_a_column_whose_type_changes_after_the_first_block_is_read_whole(tmp_path):
    """CSV readers that stream infer a column's type from its first block; the whole-file read, from all of
    it. Such a manifest is read whole, so its types are what they always were."""
    from vidbatch.io.manifest import StreamedManifest

    path = write(tmp_path, "m.csv", "uri,n\n" + "".join(f"v{i}.mp4,{i}\n" for i in range(200000)) + "x.mp4,abc\n")
    manifest = Manifest.from_path(path)
    assert not isinstance(manifest, StreamedManifest)
    assert manifest.passthrough.schema.field("n").type == pa.string() and len(manifest) == 200001


def test_a_resumed_runs_todo_list_is_read_a_batch_at_a_time(tmp_path):
    """`Pending`: the videos whose keys' hashes are not done, in manifest order, with their manifest rows."""
    from vidbatch.io.manifest import Pending, key_hashes

    path = write(tmp_path, "m.csv", "uri\n" + "".join(f"v{i}.mp4\n" for i in range(50000)))
    manifest = Manifest.from_path(path)
    done = np.unique(key_hashes(manifest.tasks.keys().take(pa.array(range(0, 50000, 3)))))
    todo = Pending(Manifest.from_path(path), done)
    expected = [t for t in manifest.tasks if t.row % 3]
    assert len(todo) == len(expected) and list(todo) == expected
    assert todo.columns().column("video_id").to_pylist() == [t.video_id for t in expected]
    assert list(Pending(manifest, np.empty(0, np.uint64))) == list(manifest.tasks)


def test_a_row_longer_than_the_csv_readers_block_is_read(tmp_path):
    """Arrow reads CSV in blocks of 1 MB and refused a longer row as 'straddling object' (reported as a
    malformed CSV): a manifest with a cell of captions or metadata over 1 MB is well-formed and is read whole."""
    path = tmp_path / "m.csv"
    path.write_text("uri,captions\na.mp4," + "x" * 3_000_000 + "\nb.mp4,short\n")
    manifest = Manifest.from_path(str(path))
    assert len(manifest) == 2 and [len(t) for t in manifest.passthrough.column("captions").to_pylist()] == [3_000_000, 5]
    # a row of too many fields, long or not, is still refused in words
    (tmp_path / "bad.csv").write_text("uri,x\na.mp4," + "y" * 2_000_000 + ",extra\n")
    with pytest.raises(ManifestError, match="malformed CSV"):
        Manifest.from_path(str(tmp_path / "bad.csv"))
