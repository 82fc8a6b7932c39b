"""Provenance records and atomic writes."""

import json
import stat

from scaling.study.provenance import Provenance, atomic_write_json, atomic_write_text


def test_atomic_write_leaves_no_temp_and_a_readable_file(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]
    assert target.stat().st_mode & stat.S_IRGRP  # not mkstemp's private 0600


def test_provenance_record_beside_result(tmp_path):
    prov = Provenance(seeds=[3, 4], device="cpu", argv=["experiments/x.py", "--quick"], budget="6M")
    result = tmp_path / "x.csv"
    atomic_write_json(result.with_suffix(".json"), {"a": 1})
    path = prov.write(result, rows=2)
    record = json.loads(path.read_text())
    assert path.name == "x.provenance.json"
    assert record["command"] == "python experiments/x.py --quick"
    assert record["seeds"] == [3, 4] and record["budget"] == "6M" and record["rows"] == 2
    assert record["result"] == "x.csv" and record["device"].startswith("cpu")
    assert len(record["git_commit"].split("+")[0]) in (40, 7) or record["git_commit"] == "unknown"
    for key in ("torch", "python", "date", "wall_time_s"):
        assert key in record
