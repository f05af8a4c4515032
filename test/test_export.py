"""frs_ros.export: ONNX round trips of the full forward and of the decode step graph (the lean
runtime's layers, Qwen3 and Llama), the TensorRT path's error without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TORCH_MISSING  # noqa: E402

torch = pytest.importorskip("torch", reason=TORCH_MISSING)
transformers = pytest.importorskip("transformers", reason=TORCH_MISSING)

from lm_models import tiny_llama, tiny_qwen3  # noqa: E402


@pytest.mark.slow
def test_onnx_full_forward_round_trip(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from frs_ros.export import export_onnx, onnx_logits, onnx_session

    model = tiny_qwen3(3)
    path = export_onnx(model, tmp_path / "student.onnx", max_len=128)
    ids = np.random.default_rng(1).integers(0, 256, (1, 17))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    got = onnx_logits(onnx_session(path), ids)
    assert np.abs(got - ref).max() < 1e-3


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_onnx_step_graph_decodes_like_the_model(tmp_path, family):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from frs_ros.export import export_onnx_step, onnx_session

    model = {"qwen3": tiny_qwen3, "llama": tiny_llama}[family](4)
    sess = onnx_session(export_onnx_step(model, tmp_path / "step.onnx", max_len=128))
    ids = list(range(7, 27))
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    L, KV, hd = 2, 2, 16
    k = v = np.zeros((L, KV, 0, hd), np.float32)
    logits, k, v = sess.run(None, {"input_ids": np.array([ids[:12]]), "past_k": k, "past_v": v})
    assert np.abs(logits[0] - ref[11]).max() < 1e-3
    for t in range(12, 20):  # token-by-token decode through the explicit cache
        logits, k, v = sess.run(None, {"input_ids": np.array([[ids[t]]]), "past_k": k, "past_v": v})
        assert np.abs(logits[0] - ref[t]).max() < 1e-3
    assert k.shape == (L, KV, 20, hd)


def test_tensorrt_path_reports_when_unavailable(tmp_path):
    from frs_ros.export import ExportUnavailableError, build_tensorrt_engine, tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT and a GPU are present; the engine build is exercised on the GPU machine")
    with pytest.raises(ExportUnavailableError, match="TensorRT"):
        build_tensorrt_engine(tmp_path / "x.onnx", tmp_path / "x.engine")
