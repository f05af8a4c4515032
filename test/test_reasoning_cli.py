"""frs-ask CLI: sim scene with the oracle (listing, answering, overlay, JSON) and input errors."""

import json

import numpy as np
import pytest

from frs_ros.reasoning.cli import load_depth, main


def test_list_and_answer_sim_query(tmp_path, capsys):
    assert main(["--sim-seed", "3"]) == 0
    listing = capsys.readouterr().out
    assert "[0]" in listing and "--query-index" in listing
    ov = tmp_path / "ov.png"
    assert main(["--sim-seed", "3", "--query-index", "1", "--overlay", str(ov), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["reasoning"].startswith("<reason>") and out["targets"]
    assert ov.exists() and ov.stat().st_size > 0


def test_usage_errors(capsys):
    assert main([]) == 2
    assert "exactly one scene" in capsys.readouterr().err
    assert main(["--sim-seed", "3", "free text that is not a generated query"]) == 2
    assert "--reasoner hf" in capsys.readouterr().err
    assert main(["x", "--image", "a.png"]) == 2
    assert "--fx" in capsys.readouterr().err


def test_load_depth(tmp_path):
    cv2 = pytest.importorskip("cv2")
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), mm)
    d = load_depth(str(tmp_path / "d.png"))
    assert d.dtype == np.float32 and np.isnan(d[0, 0]) and d[0, 1] == 1.0 and d[1, 0] == 2.5
    np.save(tmp_path / "d.npy", np.array([[0.0, 1.5]], np.float64))
    d = load_depth(str(tmp_path / "d.npy"))
    assert np.isnan(d[0, 0]) and d[0, 1] == 1.5
