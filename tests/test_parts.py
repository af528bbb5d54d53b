"""A long video decoded in parts by several decoders (the Ray engine): each part cut into ranges with the rolling
window's pre-roll, knowing nothing of the parts before it; the committer settles the ranges into those of one
decoder, and the video's tables equal the video whole."""

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ranges import CLASSES, INFO, a_video, assert_same, config
from vidbatch.io import ranges
from vidbatch.stages.parts import PartSets, empty_part
from vidbatch.stages.assemble import assemble_ok, assemble_range, info_fields, merge_options
from vidbatch.stages.ranges import RangeSplitter


def decode_parts(arrays, probs, bounds, options, range_items, chunk):
    """Each part as its decoder and write task make it: (outcome, part, last) for each of its ranges."""
    overlap = options.window - 1
    classes = CLASSES[: probs.shape[1]]
    sent = []
    for part, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        first = max(0, start - overlap) if end > start else start  # a part with nothing of its own sends nothing
        splitter = RangeSplitter(range_items=range_items, overlap=overlap, attempt="same for every part")
        splitter.preroll(start - first)
        units = []
        for at in range(first, end, chunk):
            units += splitter.push({name: values[at:min(at + chunk, end)] for name, values in arrays.items()})
        units.append(splitter.finish())
        for unit in units:
            if not len(unit):
                outcome = empty_part("v", "k", unit.attempt, unit.range_index, info_fields(INFO),
                                     merge_options(classes, options), "m", 1.0)
            else:
                rows = np.searchsorted(arrays["frame_index"], unit.frame_index)
                outcome = assemble_range("v", "k", classes, unit, probs[rows], INFO, options, "m", 1.0)
            sent.append((outcome, part, unit.last))
    return sent


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), items=st.integers(1, 60), parts=st.integers(2, 4), range_items=st.integers(1, 9),
       window=st.integers(1, 6), chunk=st.integers(1, 7), cut_rate=st.sampled_from([0.0, 0.1, 0.4]),
       data=st.data())
def test_settled_parts_merge_to_the_video_whole(seed, items, parts, range_items, window, chunk, cut_rate, data):
    options = config(window=window)
    arrays, probs = a_video(seed, items, 3, cut_rate)
    whole = assemble_ok("v", "k", CLASSES[:3], arrays["frame_index"], arrays["timestamp_s"], probs, INFO, options, "m",
                        1.0, shot_cut=arrays["shot_cut"])
    edges = sorted(data.draw(st.lists(st.integers(0, items), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *edges, items]  # parts may be empty (no sampled frame of their own)
    sent = decode_parts(arrays, probs, bounds, options, range_items, chunk)
    order = data.draw(st.permutations(range(len(sent))))
    retried = data.draw(st.integers(0, len(sent) - 1))  # a retried part sends a range again
    sets, settled = PartSets(), []
    for i in [*order[:-1], retried, order[-1]]:
        outcome, part, last = sent[i]
        settled += sets.add(outcome, part, parts, last)
    assert sets.waiting() == 0
    records = {o.record["range"]: {**o.record, "key": o.key} for o in settled}
    assert ranges.complete(records) and len(records) == len(settled)
    frames = pa.concat_tables([o.frames for o in sorted(settled, key=lambda o: o.record["range"])
                               if o.frames is not None])
    assert_same(whole, ranges.merge(records), frames)


def test_a_video_waits_for_every_part_and_one_with_no_items_fails():
    options = config(window=3)
    arrays, probs = a_video(1, 20, 3, 0.2)
    sent = decode_parts(arrays, probs, [0, 8, 20], options, range_items=5, chunk=4)
    sets = PartSets()
    assert all(not sets.add(o, part, 2, last) for o, part, last in sent if part == 1)  # part 0 not there yet
    assert sets.waiting() == 1
    done = [r for o, part, last in sent if part == 0 for r in sets.add(o, part, 2, last)]
    assert [o.record["range"] for o in done] == list(range(len(done))) and done[-1].record["ranges"] == len(done)
    assert all("merge" not in o.record for o in done[:-1]) and "merge" in done[-1].record
    nothing = [(empty_part("v", "k", "a", 0, info_fields(INFO), merge_options(CLASSES[:3], options), "m", 1.0), p, True)
               for p in range(2)]
    failed = [r for o, part, last in nothing for r in sets.add(o, part, 2, last)]
    assert len(failed) == 1 and failed[0].record["status"] == "failed"
    assert failed[0].record["error"] == ranges.NO_FRAMES and failed[0].record["frames_decoded"] == 100
