"""The trusted side reads the sandbox's results as hostile data: unit tests of each check."""
import io
import json
import zipfile

import numpy as np
import pytest

from llmprep.grading.collect import ResultError, collect, last_progress, load_npz, parse_frames, validate_summary
from llmprep.grading.record import as_markdown_text

JOB = {"cells": [{"index": 0, "label": "cell 1", "grade_id": None}, {"index": 2, "label": "cell 3 (your answer for e)",
                                                                    "grade_id": "e"}],
       "exercises": [{"grade_id": "e_test", "cases": [{}, {}], "variants": [{"name": "submitted"}]}]}


def frame(kind, payload):
    return kind.encode() + b" " + str(len(payload)).encode() + b"\n" + payload


def npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_summary():
    return {"cells": [{"index": 0, "status": "ok"}, {"index": 2, "status": "error", "message": "ValueError: x"}],
            "probes": [{"grade_id": "e_test", "variant": "submitted", "case": 0, "status": "ok"},
                       {"grade_id": "e_test", "variant": "submitted", "case": 1, "status": "error", "message": "boom"}]}


def test_a_well_formed_result_is_read_back():
    data = frame("progress", b'{"phase": "cell", "index": 2}') + frame("summary", json.dumps(good_summary()).encode()) \
        + frame("npz", npz(**{"e_test|submitted|0|y": np.arange(3.0)}))
    run = collect(parse_frames(data), JOB, 2**20)
    assert run.ok and run.cells[1]["label"] == "cell 3 (your answer for e)"
    np.testing.assert_array_equal(run.arrays["e_test|submitted|0|y"], np.arange(3.0))


@pytest.mark.parametrize("summary", [
    [1, 2, 3],
    {"cells": "x", "probes": []},
    {"cells": [{"index": 5, "status": "ok"}], "probes": []},  # a cell the notebook does not have
    {"cells": [{"index": 0, "status": "pwned"}], "probes": []},
    {"cells": [], "probes": [{"grade_id": "other", "variant": "submitted", "case": 0, "status": "ok"}]},
    {"cells": [], "probes": [{"grade_id": "e_test", "variant": "mutant:x", "case": 0, "status": "ok"}]},
    {"cells": [], "probes": [{"grade_id": "e_test", "variant": "submitted", "case": 7, "status": "ok"}]},
    {"cells": [], "probes": [{"grade_id": ["e_test"], "variant": "submitted", "case": 0, "status": "ok"}]},
])
def test_summaries_the_job_does_not_allow_are_refused(summary):
    with pytest.raises(ResultError):
        validate_summary(summary, JOB)


def test_deep_or_huge_json_is_a_one_line_failure():
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ResultError):
        collect(parse_frames(frame("summary", deep) + frame("npz", npz())), JOB, 2**20)
    assert last_progress(parse_frames(frame("progress", deep)), JOB) == {}


def test_forged_progress_is_skipped_for_the_last_valid_one():
    data = frame("progress", b'{"phase": "cell", "index": 2}') + frame("progress", b'{"phase": ["x"], "index": "0"}')
    assert last_progress(parse_frames(data), JOB) == {"phase": "cell", "index": 2}


def test_cut_or_malformed_frames_stop_parsing():
    assert parse_frames(b"summary 10\nabc") == []
    assert parse_frames(b"evil 3\nabc") == []
    assert parse_frames(frame("progress", b"{}") + b"garbage") == [("progress", b"{}")]


def test_npz_members_must_be_plain_arrays_of_their_declared_size():
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (400_000_000,)})
    header = head.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.npy", header + b"\0" * 64)
    with pytest.raises(ResultError, match="declare a size"):
        load_npz(buf.getvalue(), 2**30)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.npy", b"\0" * 10_000)
    with pytest.raises(ResultError):
        load_npz(buf.getvalue(), 2**30)
    with pytest.raises(ResultError):
        load_npz(b"not a zip", 2**30)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.npy", head.getvalue() + b"\0" * 8)
    with pytest.raises(ResultError, match="plain arrays"):
        load_npz(buf.getvalue(), 2**30)
    with pytest.raises(ResultError, match="larger"):
        load_npz(npz(a=np.zeros(1000)), 100)


def test_outputs_of_failed_probes_are_refused():
    data = frame("summary", json.dumps(good_summary()).encode()) + frame("npz", npz(**{"e_test|submitted|1|y": np.ones(2)}))
    with pytest.raises(ResultError):
        collect(parse_frames(data), JOB, 2**20)


def test_notes_render_as_text_not_html():
    text = as_markdown_text("raised <script>alert(1)</script> <img src=x onerror=alert(2)> [link](http://x) `code`")
    assert "<script>" not in text and "<img" not in text and "\\[link\\]" in text and "\\`code\\`" in text
