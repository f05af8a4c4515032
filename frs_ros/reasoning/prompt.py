"""The student's prompt: fixed instruction prefix, then the serialised twin, then the query.

The order is what makes the prompt cheap: ``[prefix]`` is the same for every query and
``[prefix + twin]`` is the same for every query on one twin, so their KV caches are reused
(see ``frs_ros.reasoning.hf_backend``). Each segment is tokenised *separately* and the ids
are concatenated (:func:`encode_prompt`), so a segment boundary is also a token boundary and
a cached prefix is exactly a token prefix. Training must use :func:`encode_prompt` too.

Layout (``chat_markers=True``, Qwen chat markers; the assistant turn holds the rollout)::

    <|im_start|>system\\n{INSTRUCTION}<|im_end|>\\n<|im_start|>user\\nScene:\\n   <- prefix
    {twin text}\\n                                                             <- twin
    Query: {query}<|im_end|>\\n<|im_start|>assistant\\n                         <- query

The rollout (``<reason>...``) follows directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

INSTRUCTION = (
    "Find the objects the query refers to. Each scene line is one object: colour, label, #id, "
    "x (0 left, 1 right), distance z in m, size in m; the facts line lists groups, orders and motion. "
    "Reason briefly in <reason></reason>. To find what can serve a use, call match(\"use\") in "
    "<plan></plan>; other tools: describe(id), relation(a, b), history(id), detect(\"text\"). Tool "
    "output comes in <results></results>. End with <answer>ids</answer>, or <answer>none</answer> if "
    "nothing fits."
)

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


@dataclass(frozen=True)
class Prompt:
    """A prompt in its three cacheable segments (strings)."""

    prefix: str
    twin: str
    query: str

    @property
    def text(self) -> str:
        return self.prefix + self.twin + self.query

    @property
    def segments(self) -> tuple[str, str, str]:
        return (self.prefix, self.twin, self.query)


@dataclass(frozen=True)
class PromptIds:
    """Token ids of a prompt; ``boundaries`` = (end of prefix, end of twin) as token counts."""

    ids: tuple[int, ...]
    boundaries: tuple[int, int]

    def __len__(self) -> int:
        return len(self.ids)


def normalise_query(query: str) -> str:
    """Collapse whitespace (newlines would break the one-line query field)."""
    return re.sub(r"\s+", " ", query).strip()


def build_prompt(twin_text: str, query: str, *, chat_markers: bool = True) -> Prompt:
    """Assemble the prompt from a serialised twin (``twin_to_text``) and the query text.

    chat_markers: wrap in Qwen chat markers (``<|im_start|>`` ...); False gives plain text for
        tokenizers without them.
    """
    twin_block = twin_text.rstrip("\n") + "\n"
    q = normalise_query(query)
    if chat_markers:
        prefix = f"{IM_START}system\n{INSTRUCTION}{IM_END}\n{IM_START}user\nScene:\n"
        tail = f"Query: {q}{IM_END}\n{IM_START}assistant\n"
    else:
        prefix = f"{INSTRUCTION}\nScene:\n"
        tail = f"Query: {q}\nAnswer:\n"
    return Prompt(prefix=prefix, twin=twin_block, query=tail)


def encode_prompt(tokenizer: Any, prompt: Prompt) -> PromptIds:
    """Tokenise each segment separately (no special tokens added) and concatenate."""
    out: list[int] = []
    bounds: list[int] = []
    for seg in prompt.segments:
        out.extend(int(t) for t in tokenizer.encode(seg, add_special_tokens=False))
        bounds.append(len(out))
    return PromptIds(ids=tuple(out), boundaries=(bounds[0], bounds[1]))


# ---- difficulty and reasoning budget (PixelThink-style: think longer only when needed)

_CUES: dict[str, Sequence[str]] = {
    "spatial": ("left", "right", "behind", "front", "next to", "between", "above", "below", "under",
                "on top", "near", "beside", "closest", "nearest", "farthest", "furthest"),
    "comparative": ("biggest", "largest", "smallest", "tallest", "bigger", "smaller", "larger",
                    "than", "most", "least", "closer", "farther"),
    "temporal": ("moving", "moved", "moves", "still", "was ", "were ", "before", "earlier", "first",
                 "last", "stopped", "started", "appeared", "disappeared", "came", "left the"),
    "attribute": ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
                  "white", "grey", "gray", "silver", "gold", "beige", "teal", "colour", "color",
                  "made of", "metal", "wooden", "plastic", "glass", "ceramic"),
    "multi": ("all ", "every", "both", "each"),
}


def query_cues(query: str) -> set[str]:
    """Which reasoning cues a query contains (spatial, comparative, temporal, attribute, multi)."""
    q = " " + normalise_query(query).lower() + " "
    return {k for k, words in _CUES.items() if any(w in q for w in words)}


def estimate_difficulty(query: str, n_objects: int = 0) -> int:
    """Difficulty 1 (easy) .. 3 (hard) from the query text and scene size.

    +1 for a long sentence (> 12 words), +1 for each hard cue (comparative, temporal, multi),
    +1 for a crowded scene (> 12 objects); clamped to 3. A pure function, used for the
    reasoning budget (the student never sees the generator's difficulty label).
    """
    words = len(normalise_query(query).split())
    cues = query_cues(query)
    d = 1
    d += words > 12
    d += len(cues & {"comparative", "temporal", "multi"})
    d += n_objects > 12
    return int(min(3, d))


def reasoning_budget(difficulty: int, budgets: Sequence[int]) -> int:
    """Reasoning-token budget for a difficulty (1-based index into ``budgets``)."""
    if not budgets:
        raise ValueError("reasoning budgets must list one budget per difficulty level, e.g. (24, 40, 64)")
    i = min(max(int(difficulty), 1), len(budgets)) - 1
    return int(budgets[i])
