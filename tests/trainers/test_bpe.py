"""The BPE tokenizer trained on the study's corpora: deterministic, cached by its inputs, usable by the data."""


import numpy as np
import pytest

pytest.importorskip("tokenizers")

from skillscale.errors import InputError  # noqa: E402
from trainers import bpe  # noqa: E402
from trainers.bpe import make_tokenizer  # noqa: E402
from trainers.data import DataSettings, load_domain, skill_examples  # noqa: E402
from trainers.evaluate import encode_examples  # noqa: E402

SETTINGS = DataSettings(knowledge_entities=200, domain_tokens=20_000, heldout_tokens=4_000, eval_samples=32,
                        bpe_train_chars=30_000)


def test_bpe_is_deterministic_cached_and_keyed_by_its_inputs(tmp_path, monkeypatch):
    a = SETTINGS.model_copy(update={"cache_dir": str(tmp_path / "a")})
    b = SETTINGS.model_copy(update={"cache_dir": str(tmp_path / "b")})
    path_a, path_b = bpe.bpe_tokenizer_path("bpe:400", a), bpe.bpe_tokenizer_path("bpe:400", b)
    assert path_a.name == path_b.name and path_a.read_text() == path_b.read_text()  # same inputs, same merges
    monkeypatch.setattr(bpe, "train_bpe", lambda *args: pytest.fail("cache not used"))
    assert bpe.bpe_tokenizer_path("bpe:400", a) == path_a
    monkeypatch.undo()
    other = bpe.bpe_tokenizer_path("bpe:400", a.model_copy(update={"knowledge_popularity": 0.5}))
    assert other != path_a and bpe.bpe_tokenizer_path("bpe:420", a) != path_a


def test_bpe_tokenizer_encodes_the_domains_and_the_evals(tmp_path):
    settings = SETTINGS.model_copy(update={"cache_dir": str(tmp_path)})
    tok = make_tokenizer("bpe:512", settings)
    assert tok.vocab_size == 512 and tok.name.startswith("hf:")
    text = "def f(x):\n    return x + 1  # héllo\n"
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) < len(text.encode())  # merges learnt
    for name in ("knowledge", "code", "general"):
        dom = load_domain(name, settings, tok, 32)
        assert dom.train.max() < 512 and (dom.train == tok.eos_id).any() and len(dom.heldout) > 32
    ev = encode_examples(skill_examples("code", settings, tok), tok, 64, tok.eos_id)
    assert ev.inputs.max() < 512 and (ev.targets >= 0).any(axis=1).all()
    assert np.array_equal(tok.encode_batch_arrays([text, "ab"])[0], tok.encode_array(text))


@pytest.mark.parametrize("spec", ["bpe:", "bpe:abc", "bpe:100", "bpe:99999999"])
def test_bad_bpe_spelling_is_one_line(spec):
    with pytest.raises(InputError, match=r"tokenizer: expected 'bpe:<vocab size>'"):
        make_tokenizer(spec, SETTINGS)
