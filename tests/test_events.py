"""foleyflow.events: the one ground-truth reader (FoleyWorld documents and bare event lists) and its errors."""
from __future__ import annotations

import json

import pytest

from foleyflow.errors import EvalError
from foleyflow.events import SoundEvent, TruthError, marked_audible, read_events, read_truth


def test_reads_documents_and_bare_lists_and_refuses_bad_files(tmp_path):
    ev = SoundEvent("snare", "discrete", 0.5, 0.9, source_id=1, pan=-0.5, params={"audible": False})
    doc, bare = tmp_path / "doc.json", tmp_path / "bare.json"
    doc.write_text(json.dumps({"id": "c", "duration_s": 2.0, "events": [ev.to_json()]}))
    bare.write_text(json.dumps([ev.to_json()]))
    assert read_truth(doc)["id"] == "c" and read_truth(bare) == {"events": [ev.to_json()]}
    assert read_events(doc) == read_events(bare) == [ev]
    assert not marked_audible(ev) and marked_audible(SoundEvent("snare", "discrete", 0.1))
    assert issubclass(TruthError, EvalError)  # the evaluation code's callers catch EvalError
    (tmp_path / "text.json").write_text("{not json")
    (tmp_path / "obj.json").write_text('{"objects": []}')
    for name, words in (("none.json", "not found"), ("text.json", "not valid JSON"), ("obj.json", "'events' list")):
        with pytest.raises(TruthError, match=words):
            read_truth(tmp_path / name)
