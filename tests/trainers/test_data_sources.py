"""The built-in data's sources on tiny slices: the Zipf world and its eval, the stdlib split, function-body and
prose extraction, the disk cache, user skill evaluation sets, and the evaluator's weights, text rows and errors."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from skillscale.errors import InputError
from trainers import corpora, data, python_sources
from trainers.data import DataSettings, load_domain, skill_examples, skill_names
from trainers.evaluate import Evaluator, encode_examples, mean_nll, weighted_loss
from trainers.model import IGNORE_INDEX, Transformer
from trainers.shapes import shape_for
from trainers.tokenizer import ByteTokenizer

TOK = ByteTokenizer()
SETTINGS = DataSettings(knowledge_entities=2_000, domain_tokens=200_000, heldout_tokens=4_000, eval_samples=512)


def test_knowledge_mentions_are_heavy_tailed_and_the_eval_samples_them():
    counts = data.knowledge_mentions(SETTINGS)
    p = corpora.popularity(2_000, 1.2, 20.0)
    n_bios = counts.sum()
    assert counts[:10].sum() > 5 * counts[1000:1010].sum()  # the head is mentioned far more than the tail
    assert abs(counts[:100].sum() / n_bios - p[:100].sum()) < 0.03  # the stream follows the popularity
    uniform = data.knowledge_mentions(SETTINGS.model_copy(update={"knowledge_popularity": 0.0}))
    assert uniform[:100].sum() / uniform.sum() < 0.08  # exponent 0: every person about equally often
    questions = skill_examples("knowledge", SETTINGS)
    assert sum(w for *_, w in questions) == 512 and len(questions) < 512  # repeated questions merged
    world = data.world(SETTINGS)
    rank = {world.name(r): r for r in range(len(world))}
    drawn = np.zeros(len(world))
    for prompt, answer, weight in questions:
        r = next(r for name, r in rank.items() if f" {name} " in prompt or f" {name}?" in prompt)
        assert counts[r] > 0 and answer.strip(" .") in world[r].facts.values()
        drawn[r] += weight
    # systematic sampling: each person's draws are within one of n * (its share of the mentions)
    assert np.all(np.abs(drawn - 512 * counts / n_bios) <= 1.0 + 1e-9)


def test_world_is_deterministic_with_unique_names():
    a, b = corpora.make_world(5_000, 3), corpora.make_world(5_000, 3)
    assert [a[r] for r in range(0, 5_000, 97)] == [b[r] for r in range(0, 5_000, 97)]
    assert len({a.name(r) for r in range(5_000)}) == 5_000
    assert a[7] != corpora.make_world(5_000, 4)[7]


def test_stdlib_split_is_a_deterministic_hash_rule_over_relative_paths():
    train, held = python_sources.split_files("stdlib", 10.0)
    keys = [f.key for f in train + held]
    assert len(set(keys)) == len(keys) and all(k.startswith("stdlib/") for k in keys)
    assert not any("site-packages/" in k or "/__pycache__/" in k for k in keys)
    assert 0.05 < len(held) / len(keys) < 0.15
    assert all(f.heldout(10.0) for f in held) and not any(f.heldout(10.0) for f in train)
    assert [f.digest for f in train] == sorted(f.digest for f in train)  # read in hash order
    assert {f.key for f in held} < {f.key for f in python_sources.split_files("stdlib", 20.0)[1]}  # nested


def test_function_examples_cut_signature_and_docstring_from_the_body():
    source = '''
class A:
    @property
    def area(self, scale=2):
        """The area.

        Scaled.
        """
        w = self.w * scale
        return w * self.h

def one(): return 1

def no_doc(x):
    y = x + 1
    return y * y * y
'''
    examples = python_sources.function_examples(source, max_chars=1000, min_answer_chars=10)
    assert examples == [
        ('def area(self, scale=2):\n    """The area.\n\n    Scaled.\n    """\n',
         "    w = self.w * scale\n    return w * self.h\n"),
        ("def no_doc(x):\n", "    y = x + 1\n    return y * y * y\n"),
    ]
    assert python_sources.function_examples(source, max_chars=40, min_answer_chars=10) == []
    assert python_sources.function_examples("def broken(:\n", 1000) == []


def test_code_eval_is_held_out_stdlib_functions():
    examples = skill_examples("code", SETTINGS)
    assert 0 < len(examples) <= 512
    train, held = python_sources.split_files("stdlib", SETTINGS.heldout_percent)
    held_text = "".join(f.read() for f in held[:40])
    for prompt, answer in examples[:20]:
        assert prompt.lstrip().startswith(("def ", "async def ")) and answer.strip()
        assert len(prompt) + len(answer) <= SETTINGS.code_eval_max_chars
    assert any(answer.strip().splitlines()[0].strip() in held_text for _, answer in examples[:20])


def test_prose_keeps_docstrings_and_comments_and_drops_doctests_and_code():
    source = '''"""A module that parses configuration files and reports what it found, line by line.

>>> parse("x")
['x']

That is all there is to it, really, for the time being.
"""
# The parser reads one line at a time and keeps the state of the
# section it is in, so that keys can be qualified by their section.
x = 1  # trailing comments are not prose
PATTERN = "[a-z]+(?:_[a-z0-9]+)*|\\\\d{1,3}(?:,\\\\d{3})*|[(){}]"
'''
    paras = python_sources.prose_paragraphs(source)
    assert paras == [
        "A module that parses configuration files and reports what it found, line by line.\n\n"
        "That is all there is to it, really, for the time being.",
        "The parser reads one line at a time and keeps the state of the section it is in, so that keys can be "
        "qualified by their section.",
    ]
    extract = python_sources.ProseExtractor()
    assert extract(source) and extract(source) == ""  # a paragraph is kept once per stream


def test_builtin_real_streams_are_capped_cached_and_held_out(tmp_path, monkeypatch):
    settings = SETTINGS.model_copy(update={"domain_tokens": 30_000, "cache_dir": str(tmp_path)})
    code = load_domain("code", settings, TOK, 64)
    general = load_domain("general", settings, TOK, 64)
    assert 30_000 <= len(code.train) <= 30_000 + 200 and len(general.train) >= 30_000  # cap (+ one EOS per doc)
    assert TOK.decode(general.train[:2000]).count(" ") > 200  # prose: words
    assert len(list(tmp_path.glob("*.npz"))) == 2
    data._DOMAIN_CACHE.clear()
    monkeypatch.setattr(data, "_real_builtin_texts", lambda *a: pytest.fail("cache not used"))
    again = load_domain("code", settings, TOK, 64)
    assert np.array_equal(again.train, code.train) and np.array_equal(again.heldout, code.heldout)
    held_files = python_sources.split_files("stdlib", settings.heldout_percent)[1]
    assert TOK.decode(code.heldout[:200]) == held_files[0].read()[:200]


def test_user_skill_evals_from_jsonl_and_text_files(tmp_path):
    qa = tmp_path / "math.jsonl"
    qa.write_text("\n".join(json.dumps({"prompt": f"{i}+{i}=", "answer": str(2 * i)}) for i in range(30))
                  + "\n" + json.dumps({"prompt": "1+1=", "answer": "2", "weight": 3}) + "\n")
    text = tmp_path / "poems.txt"
    text.write_text("The sea is calm tonight, the tide is full. " * 20)
    settings = SETTINGS.model_copy(update={"skill_evals": {"math": str(qa), "poems": str(text)}})
    assert skill_names(settings) == ("knowledge", "code", "math", "poems")
    rows = skill_examples("math", settings)
    assert rows[0] == ("0+0=", "0", 1.0) and rows[-1] == ("1+1=", "2", 3.0) and len(rows) == 31
    assert skill_examples("poems", settings) == [("", text.read_text())]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "answer": "b"}) + "\n{not json\n")
    with pytest.raises(InputError, match=r"skill_evals\.math: .*bad\.jsonl' line 2 is not JSON"):
        skill_examples("math", settings.model_copy(update={"skill_evals": {"math": str(bad)}}))
    bad.write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(InputError, match=r"line 1 has no string 'answer' field"):
        skill_examples("math", settings.model_copy(update={"skill_evals": {"math": str(bad)}}))
    with pytest.raises(InputError, match="missing.jsonl' not found"):
        skill_examples("math", settings.model_copy(update={"skill_evals": {"math": str(tmp_path / "missing.jsonl")}}))
    with pytest.raises(ValidationError, match="skill_evals\n.*expected a mapping of names to file paths"):
        DataSettings(skill_evals={"math": 3})


def test_encode_examples_windows_weights_and_text_rows():
    seq_len = 32
    long_prompt, long_answer = "p" * 50, "a" * 50
    ev = encode_examples([("Q?", " yes", 2.0), (long_prompt, long_answer), ("", "t" * 70)], TOK, seq_len, 258)
    assert ev.inputs.shape == (5, 32) and list(ev.weights) == [2.0, 1.0, 1.0, 1.0, 1.0]
    assert list(ev.example) == [0, 1, 2, 2, 2]
    scored = ev.targets != IGNORE_INDEX
    assert scored[0].sum() == 4 and ev.inputs[0, 0] == ord("Q")
    assert scored[1].sum() == 32 - 16 + 1 and ev.inputs[1, :16].tolist() == [ord("p")] * 16  # half prompt
    assert scored[2:].sum() == 69  # a text: every token after its first, once
    assert ev.inputs.shape[1] == 32
    short = encode_examples([("Q?", " yes")], TOK, 256, 258)
    assert short.inputs.shape == (1, 16)  # rows as long as needed, rounded up to 16


def test_evaluator_text_skill_is_mean_nll_per_token_and_reports_errors(tmp_path):
    torch.manual_seed(0)
    model = Transformer(shape_for(70_000, TOK.vocab_size, 32))
    text = "It was the best of times, it was the worst of times. " * 3
    sets = {"text": [("", text)], "qa": [("Q: a?\nA:", " b.", 5.0), ("Q: c?\nA:", " d.", 1.0)]}
    ev = Evaluator(sets, {}, TOK, 32)
    skills, domains, errors = ev.run_with_errors(model, torch.device("cpu"))
    ids = TOK.encode(text)
    windows = [ids[i : i + 33] for i in range(0, len(ids) - 1, 32)]
    expected = sum(mean_nll(model, np.array([w[:-1]]), np.array([w[1:]]), torch.device("cpu")) * (len(w) - 1)
                   for w in windows) / (len(ids) - 1)
    assert skills["text"] == pytest.approx(expected, rel=1e-6) and domains == {}
    assert 0 < errors["qa"] < skills["qa"] and np.isfinite(errors["text"])
    assert ev.run(model, torch.device("cpu"))[0] == skills


def test_weighted_loss_standard_error_matches_its_formula():
    sums, counts = np.array([1.0, 3.0, 2.0]), np.array([1, 2, 2])
    loss, se = weighted_loss(sums, counts, np.array([2.0, 1.0, 1.0]), np.array([0, 1, 2]))
    assert loss == pytest.approx((2 + 3 + 2) / (2 + 2 + 2))
    resid = np.array([1 - loss, 3 - 2 * loss, 2 - 2 * loss])
    assert se == pytest.approx(np.sqrt((np.array([2, 1, 1]) * resid**2).sum()) / 6)


def test_torch_backend_scores_user_skills(tmp_path, tiny_settings):
    from trainers.spec import RunSpec
    from trainers.torch_backend import TorchBackend

    qa = tmp_path / "math.jsonl"
    qa.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(20)) + "\n")
    prose = tmp_path / "prose.txt"
    prose.write_text("It is a truth universally acknowledged that a model in want of data must be trained. " * 5)
    backend = TorchBackend(**tiny_settings, skill_evals={"math": str(qa), "prose": str(prose)},
                           cache_dir=str(tmp_path / "cache"))
    spec = RunSpec(n_params=70_000, n_tokens=2_048, mix={"knowledge": 0.5, "code": 0.5}, seed=0,
                   hparams={"batch_tokens": 512})
    result = backend.run(spec, tmp_path / "run")
    assert result.status == "ok" and set(result.losses) == {"knowledge", "code", "math", "prose"}
    assert all(np.isfinite(v) and v > 0 for v in result.losses.values())


def test_parallel_prose_reading_gives_the_serial_documents():
    files = python_sources.split_files("stdlib", 10.0)[0][:12]
    serial_extractor, parallel_extractor = python_sources.ProseExtractor(), python_sources.ProseExtractor()
    serial = python_sources.read_until(files, 40_000, serial_extractor)
    parallel = python_sources.read_prose_until(files, 40_000, parallel_extractor, workers=2)
    assert parallel == serial and serial_extractor._seen == parallel_extractor._seen
