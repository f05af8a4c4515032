"""Word-level tokenizer for the nano student, fitted to the simulated world's language.

The corpus is twin text + queries + rollouts (+ the ontology's words, so held-out category
names still get their own token instead of ``[UNK]``). Splitting (a ``tokenizers`` pipeline,
so it runs in Rust and saves as a standard ``tokenizer.json``):

- a space is folded into the next piece as ``▁`` (SentencePiece convention), so decoding is
  an exact inverse: ``" red mug"`` -> ``["▁red", "▁mug"]`` -> ``" red mug"``;
- pieces are letter runs (with a trailing ``=``: ``"▁size="``), numbers cut into ``"d."``,
  ``"dd"`` and ``"d"`` pieces (``"0.37"`` -> ``["0.", "37"]``; all 120 such pieces are always in
  the vocabulary, so no number is ever unknown and twin lines stay short), single punctuation
  marks, single newlines;
- rollout tags (``<reason>`` ...), chat markers (``<|im_start|>``, ``<|im_end|>``) are atomic
  added tokens; they are *not* special, so ``decode(..., skip_special_tokens=True)`` keeps them;
- a piece never seen in the corpus becomes ``[UNK]`` (id 1) and decodes to nothing with
  ``skip_special_tokens=True`` (``"[UNK]"`` otherwise); encoding never fails.

The result is wrapped as ``transformers.PreTrainedTokenizerFast`` and saved with
``save_pretrained`` (``tokenizer.json`` + ``tokenizer_config.json``), so ``AutoTokenizer``
loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

PAD, UNK, BOS = "[PAD]", "[UNK]", "[BOS]"
EOS = "<|im_end|>"
SPECIAL_TOKENS = (PAD, UNK, BOS)
SPLIT_PATTERN = r"▁?\p{L}+=?|▁?\d\.|▁?\d\d|▁?\p{N}|▁?[^\p{L}\p{N}▁\s]|\s|▁"


def tag_tokens() -> list[str]:
    """Atomic non-special tokens: rollout tags and chat markers."""
    from frs_ros.reasoning.prompt import IM_END, IM_START
    from frs_ros.reasoning.rollout import TAGS

    return [*TAGS, IM_START, IM_END]


def ontology_words() -> list[str]:
    """Every word the sim world can say: categories (+ synonyms, plurals), colours, materials,
    affordance phrases and their clauses. Empty if the sim ontology is unavailable."""
    try:
        from frs_ros.sim import ontology
    except ImportError:
        return []
    words: list[str] = []
    for cat in getattr(ontology, "_TABLE", ()):
        words += [cat.name, cat.plural_name, cat.supercategory, *cat.synonyms]
    words += list(ontology.COLORS) + list(ontology.MATERIALS)
    for phrase, (clause, need) in ontology.AFFORDANCES.items():
        words += [phrase, clause, need]
    return words


def fit_tokenizer(texts: Iterable[str], min_frequency: int = 1, max_vocab: int = 8000, include_ontology: bool = True):
    """Fit the word-level vocabulary on ``texts`` and return a ``PreTrainedTokenizerFast``.

    Each ontology word is added to the corpus twice in both "▁word" and "word" forms, so it
    survives ``min_frequency=2``. Token ids: 0 [PAD], 1 [UNK], 2 [BOS], then the corpus pieces
    by frequency, then tags and chat markers.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def new_tokenizer():
        t = Tokenizer(models.WordLevel(unk_token=UNK))
        t.normalizer = normalizers.Replace(" ", "▁")
        t.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
        t.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
        return t

    def new_trainer():
        return trainers.WordLevelTrainer(
            vocab_size=max_vocab, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )

    texts = list(texts)
    extra: list[str] = []
    if include_ontology:
        for w in ontology_words():
            extra += [w, " " + w] * max(1, min_frequency)
    tags = tag_tokens()

    def corpus(more: Sequence[str] = ()):
        try:  # the fixed prompt frame (instruction, "Scene:", "Query:") is part of every input
            from frs_ros.reasoning.prompt import build_prompt

            for markers in (True, False):
                frame = build_prompt("", "", chat_markers=markers)
                yield (frame.prefix + frame.query) * max(1, min_frequency)
        except ImportError:
            pass
        yield from texts
        yield from extra
        yield from more
        digits = [d for d in "0123456789"] + [d + "." for d in "0123456789"]
        digits += [a + b for a in "0123456789" for b in "0123456789"]
        for _ in range(max(1, min_frequency)):
            yield "\n".join(digits) + "\n " + " ".join(digits)

    # Pass 1 finds the words; pass 2 adds each word's other form ("word" <-> "▁word"), so a word
    # seen only at a line start (or only after a space) is still known in the other position.
    first = new_tokenizer()
    first.train_from_iterator(corpus(), new_trainer())
    counterparts = []
    for piece in first.get_vocab():
        if piece in SPECIAL_TOKENS:
            continue
        other = piece[1:] if piece.startswith("▁") else "▁" + piece
        if other and other != "▁":
            counterparts.append(other.replace("▁", " ") + "\n")
    tok = new_tokenizer()
    tok.train_from_iterator(corpus(counterparts * max(1, min_frequency)), new_trainer())
    tok.add_tokens([AddedToken(t, normalized=False, special=False, single_word=False) for t in tags])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    return wrapped


def load_tokenizer(path: str | Path):
    """Load a saved tokenizer (ours or any HF one) with ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def corpus_from_records(records: Iterable[dict], build_prompt_text: Optional[callable] = None) -> Iterable[str]:
    """Texts of chain records (see :mod:`frs_ros.training.chains`): twin, query, rollout."""
    for r in records:
        yield r.get("twin_text", "")
        yield r.get("query", "")
        yield r.get("rollout", "")
        if build_prompt_text is not None:
            yield build_prompt_text(r)
