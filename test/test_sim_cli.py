"""frs-sim CLI: generate (through frs_ros.data writers), stats, visualise."""

import json

import cv2
import numpy as np

from frs_ros.data import load_reasonseg, load_revos
from frs_ros.sim import generate_image
from frs_ros.sim.cli import INDEX_NAME, MANIFEST_NAME, main


def test_generate_images_stats_visualise(tmp_path, capsys):
    out = tmp_path / "img"
    assert main(["generate", "--kind", "image", "--n", "3", "--seed", "4", "--split", "val",
                 "--out", str(out), "--image-ext", ".png"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["samples"] == 3 and manifest["format"] == "reasonseg"
    records = [json.loads(line) for line in (out / INDEX_NAME).read_text().splitlines()]
    assert [r["seed"] for r in records] == [4, 5, 6]
    # What the data loader reads back equals the simulator's ground truth.
    loaded = {s.name: s for s in load_reasonseg(out, "val")}
    sim = generate_image(4, "val")
    got = loaded[records[0]["name"]]
    assert np.array_equal(got.rgb, sim.frames[0].rgb)
    assert len(got.queries) == len(sim.queries)
    for qg, q in zip(got.queries, sim.queries):
        assert qg.text == q.text and qg.meta.kind == q.kind and qg.meta.target_ids == q.target_ids
        assert np.array_equal(qg.mask, sim.frames[0].gt.union_mask(q.target_ids))
    assert np.nanmax(np.abs(got.depth - sim.frames[0].depth)) <= 0.0006

    capsys.readouterr()
    assert main(["stats", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["samples"] == 3 and st["queries"] == sum(len(r["queries"]) for r in records)
    assert sum(st["kinds"].values()) == st["queries"] and st["mean_objects"] >= 3

    png = tmp_path / "sheet.png"
    assert main(["visualise", str(out), "--out", str(png), "--n", "4"]) == 0
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 480 and img.shape[1] == 2 * 640


def test_generate_video_and_bad_dir(tmp_path, capsys):
    out = tmp_path / "vid"
    assert main(["generate", "--kind", "video", "--n", "1", "--seed", "1", "--split", "test",
                 "--out", str(out), "--n-frames", "10"]) == 0
    (video,) = load_revos(out, "test")
    assert len(video.frames) == 10 and video.depth is not None
    assert all(e.meta is not None and e.meta.split == "test" for e in video.expressions)
    assert main(["visualise", str(out), "--out", str(tmp_path / "v.png"), "--n", "2"]) == 0
    assert main(["stats", str(tmp_path / "nothing")]) == 1
    assert "not found" in capsys.readouterr().err
