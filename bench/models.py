"""Real-size models with random weights for the benchmark (speed does not depend on weights).

Configs are the public checkpoints' values, stored in ``bench/configs/*.json`` (each with a
``_source`` note and, for vision models, the ``_preprocessor`` values the twin backends read).
Vision models are written with ``save_pretrained`` into a cache directory and then loaded by the
twin backends through their normal ``from_pretrained(path)`` path. ``quick=True`` gives miniature
versions of the same architectures for a fast smoke run of the benchmark code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

VISION = {
    "sam2": "sam2.1-hiera-tiny",
    "owlv2": "owlv2-base-patch16-ensemble",
    "depth": "depth-anything-v2-small",
}
LLMS = {"qwen3-0.6b": "qwen3-0.6b", "qwen3-1.7b": "qwen3-1.7b"}


def read_config(name: str) -> tuple[dict, dict, str]:
    """``(model config dict, preprocessor dict, source note)`` of ``bench/configs/<name>.json``."""
    d = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    source = d.pop("_source", "")
    pre = d.pop("_preprocessor", {})
    return d, pre, source


def _clip_tokenizer():
    """A CLIP tokenizer (character vocabulary, 16-token context as OWLv2 ships it): the text tower
    runs on padded 16-token inputs, so its cost does not depend on the vocabulary."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _quick_overrides(kind: str) -> dict:
    if kind == "sam2":
        s = 64
        return dict(
            vision_config=dict(
                model_type="sam2_vision_model",
                backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=12, image_size=s, blocks_per_stage=[1, 1, 1, 1],
                                     embed_dim_per_stage=[12, 24, 48, 96], window_size_per_stage=[2, 2, 2, 2],
                                     window_positional_embedding_background_size=[2, 2]),
                backbone_channel_list=[96, 48, 24, 12],
                backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2], fpn_hidden_size=128),
            prompt_encoder_config=dict(image_size=s, patch_size=16, mask_input_channels=8, hidden_size=128),
            mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_hidden_layers=1, num_attention_heads=4,
                                     iou_head_hidden_dim=32),
            image_size=s, memory_attention_hidden_size=128, memory_encoder_hidden_size=128,
            memory_encoder_output_channels=64, mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
            memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
            memory_attention_rope_feat_sizes=[s // 16, s // 16],
        )
    if kind == "owlv2":
        return dict(
            text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=8),
            projection_dim=16,
        )
    return dict(
        backbone_config=dict(model_type="dinov2", image_size=28, patch_size=14, hidden_size=8, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=16, out_features=["stage1", "stage2"],
                             reshape_hidden_states=False),
        reassemble_hidden_size=8, neck_hidden_sizes=[4, 4], fusion_hidden_size=6, reassemble_factors=[1, 1],
    )


def save_vision_model(kind: str, root: Path, quick: bool = False) -> tuple[Path, int, str]:
    """Write the random-weight model ``kind`` ('sam2' | 'owlv2' | 'depth') under ``root``.

    Returns ``(directory, parameter count, source note)``; an existing directory is reused.
    """
    import torch

    name = VISION[kind] + ("-quick" if quick else "")
    path = Path(root) / name
    cfg_d, pre, source = read_config(VISION[kind])
    if quick:
        cfg_d = _quick_overrides(kind)
        pre = {"sam2": {"size": {"height": 64, "width": 64}}, "owlv2": {"size": {"height": 32, "width": 32}},
               "depth": {"size": {"height": 28, "width": 28}, "keep_aspect_ratio": False,
                         "ensure_multiple_of": 14, "do_pad": False}}[kind]
    done = path / ".complete"
    torch.manual_seed(0)
    if kind == "sam2":
        from transformers import Sam2VideoConfig as C, Sam2VideoModel as M
    elif kind == "owlv2":
        from transformers import Owlv2Config as C, Owlv2ForObjectDetection as M
    else:
        from transformers import DepthAnythingConfig as C, DepthAnythingForDepthEstimation as M
    for k in ("transformers_version", "architectures", "dtype", "model_type"):
        cfg_d.pop(k, None)
    cfg = C(**cfg_d)
    if done.exists():
        n = int(done.read_text())
        return path, n, source
    path.mkdir(parents=True, exist_ok=True)
    model = M(cfg)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    if kind == "sam2":
        (path / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": pre.get("image_mean", [0.485, 0.456, 0.406]),
             "image_std": pre.get("image_std", [0.229, 0.224, 0.225]), "size": pre["size"]}))
    elif kind == "owlv2":
        from transformers import Owlv2ImageProcessorPil, Owlv2Processor

        Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size=pre["size"]),
                       tokenizer=_clip_tokenizer()).save_pretrained(path)
    else:
        from transformers import DPTImageProcessorPil

        DPTImageProcessorPil(**pre).save_pretrained(path)
    done.write_text(str(n))
    return path, n, source


def qwen3_config(name: str, quick: bool = False) -> Any:
    """``Qwen3Config`` of ``bench/configs/<name>.json`` (quick: 2 layers, hidden 64, same vocab)."""
    from transformers import Qwen3Config

    d, _, _ = read_config(LLMS[name])
    for k in ("architectures", "torch_dtype", "transformers_version", "model_type"):
        d.pop(k, None)
    if quick:
        d.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=4096)
    return Qwen3Config(**d)


def build_qwen3(name: str, quick: bool = False, seed: int = 0):
    """A random-weight ``Qwen3ForCausalLM`` of the real size, fp32, eval mode."""
    import torch
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(qwen3_config(name, quick))
    return model.float().eval()
