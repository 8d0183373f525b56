import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skillscale.errors import InputError
from trainers import corpora, data
from trainers.bpe import make_tokenizer
from trainers.data import (
    DataSettings,
    MixtureSampler,
    load_domain,
    rows_per_domain,
    skill_examples,
    validate_mix,
)
from trainers.tokenizer import ByteTokenizer

SETTINGS = DataSettings(knowledge_entities=50, domain_tokens=20_000, heldout_tokens=4_000, eval_samples=16)
TOK = ByteTokenizer()


def sampler(mix, seed=0, seq_len=32, settings=SETTINGS):
    domains = {n: load_domain(n, settings, TOK, seq_len) for n in mix}
    return MixtureSampler(domains, mix, seq_len, seed)


@pytest.mark.parametrize(
    "mix,n_rows",
    [
        ({"knowledge": 0.5, "code": 0.3, "general": 0.2}, 40),
        ({"knowledge": 1 / 3, "code": 1 / 3, "general": 1 / 3}, 17),
        ({"knowledge": 0.9, "general": 0.1}, 7),
    ],
)
def test_realised_mix_matches_requested(mix, n_rows):
    # generated general text: stdlib prose also appears verbatim in the code stream (its docstrings), so a row
    # could not be told apart by looking it up
    s = sampler(mix, settings=SETTINGS.model_copy(update={"general_source": "generated"}))
    stream_of = {}
    for name in mix:  # identify each row's domain by looking it up in the domain's stream
        stream_of[name] = s.domains[name].train.tobytes()
    for step in range(5):
        x, y, counts = s.batch(step, n_rows)
        assert x.shape == (n_rows, 32) and y.shape == (n_rows, 32)
        assert np.array_equal(x[:, 1:], y[:, :-1])
        assert sum(counts.values()) == n_rows
        for name, weight in mix.items():
            assert abs(counts[name] - weight * n_rows) < 1  # largest remainder: within one row
        realised = {}
        for row in np.concatenate([x, y[:, -1:]], axis=1):
            owners = [n for n in mix if row.astype(np.int32).tobytes() in stream_of[n]]
            assert len(owners) >= 1
            realised[owners[0]] = realised.get(owners[0], 0) + 1
        assert realised == {n: c for n, c in counts.items() if c}


def test_rows_per_domain_exact_cases():
    assert rows_per_domain({"a": 0.5, "b": 0.3, "c": 0.2}, 10) == {"a": 5, "b": 3, "c": 2}
    assert rows_per_domain({"a": 0.5, "b": 0.5}, 3) == {"a": 2, "b": 1}  # tie -> first name
    assert rows_per_domain({"a": 0.05, "b": 0.95}, 4) == {"a": 0, "b": 4}


def test_same_seed_and_step_same_batch():
    mix = {"knowledge": 0.5, "code": 0.5}
    a, b = sampler(mix, seed=3), sampler(mix, seed=3)
    for step in (0, 7, 1000):
        assert np.array_equal(a.batch(step, 9)[0], b.batch(step, 9)[0])
    assert not np.array_equal(a.batch(1, 9)[0], a.batch(2, 9)[0])
    assert not np.array_equal(a.batch(1, 9)[0], sampler(mix, seed=4).batch(1, 9)[0])


def test_mix_validation():
    with pytest.raises(InputError, match="'poetry'"):
        validate_mix({"poetry": 1.0}, SETTINGS)
    with pytest.raises(InputError, match="sum to 1"):
        validate_mix({"knowledge": 0.5, "code": 0.3}, SETTINGS)
    with pytest.raises(InputError, match="empty"):
        validate_mix({}, SETTINGS)


def test_knowledge_eval_asks_trained_facts_in_training_or_heldout_phrasings():
    world = data.world(SETTINGS)
    docs = "\n".join(data.knowledge_documents(SETTINGS, SETTINGS.domain_tokens))
    trained = {q.format(n=e.name) for e in world for qs in corpora.TRAIN_QUESTIONS.values() for q in qs}
    for phrasing in ("recall", "extract"):
        questions = skill_examples("knowledge", SETTINGS.model_copy(update={"knowledge_eval": phrasing}))
        assert sum(w for _, _, w in questions) == 16  # draws; repeated questions merged into weights
        for prompt, answer, _ in questions:
            question = prompt.removeprefix("Q: ").removesuffix("\nA:")
            assert (question in trained) == (phrasing == "recall")  # the phrasing: seen in training or held out
            assert (question in docs) <= (phrasing == "recall")
            name = next(e.name for e in world if e.name in prompt)
            assert f"{name}" in docs and answer.strip(" .") in docs  # the fact always appears in training
    with pytest.raises(ValidationError, match="knowledge_eval\n.*expected one of recall, extract, got 'paraphrase'"):
        DataSettings(knowledge_eval="paraphrase")


def test_generated_code_eval_programs_are_held_out_and_outputs_correct():
    settings = SETTINGS.model_copy(update={"code_source": "generated"})
    programs = skill_examples("code", settings)
    train = corpora.code_documents(0, 50_000, {p for p, _ in programs})
    train_prompts = {d[: d.index("# output:\n") + len("# output:\n")] for d in train}
    assert not train_prompts & {p for p, _ in programs}
    for prompt, answer in programs[:10]:  # the generator's own bookkeeping agrees with Python
        source = prompt.replace("# output:\n", "")
        printed = []
        exec(
            compile(source, "<generated>", "exec"),
            {"print": lambda *a, out=printed: out.append(" ".join(map(str, a)))},
        )
        assert "\n".join(printed) + "\n" == answer


def test_real_corpora_load_cache_and_errors(tmp_path):
    text = "def f(x):\n    return x + 1\n" * 200
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(text)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": text[i : i + 90]}) for i in range(0, 5000, 90)))
    pq.write_table(pa.table({"text": [text] * 3}), tmp_path / "d.parquet")
    pq.write_table(pa.table({"body": [text]}), tmp_path / "bad.parquet")
    (tmp_path / "e.txt").write_text(text)
    cache = tmp_path / "cache"
    corpora_ = {
        "py": str(tmp_path / "src"),
        "jl": str(tmp_path / "c.jsonl"),
        "pq": str(tmp_path / "d.parquet"),
        "txt": str(tmp_path / "e.txt"),
    }
    settings = DataSettings(corpora=corpora_, cache_dir=str(cache))
    for name in corpora_:
        dom = load_domain(name, settings, TOK, 32)
        assert len(dom.train) > len(dom.heldout) > 32
        assert TOK.decode(dom.train[:12]) == text[:12]
    assert len(list(cache.glob("*.npy"))) == 4 and not list(cache.glob(".*tmp"))
    assert validate_mix({"py": 0.5, "knowledge": 0.5}, settings)
    missing = DataSettings(corpora={"web": str(tmp_path / "nope.parquet")}, cache_dir=str(cache))
    with pytest.raises(InputError, match="nope.parquet"):
        load_domain("web", missing, TOK, 32)
    with pytest.raises(InputError, match="'text' column"):
        load_domain("bad", DataSettings(corpora={"bad": str(tmp_path / "bad.parquet")}, cache_dir=str(cache)), TOK, 32)


def test_tokenizers():
    tok = make_tokenizer("bytes")
    assert tok.vocab_size == 260 and tok.decode(tok.encode("héllo")) == "héllo"
    assert tok.encode("ab") + tok.encode("c") == tok.encode("abc")
    with pytest.raises(InputError, match="missing.json"):
        make_tokenizer("/nonexistent/missing.json")


def test_hf_tokenizer_needs_the_package_or_a_valid_file(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="'tokenizers' package"):
            make_tokenizer(str(path))
    else:
        with pytest.raises(InputError, match="tokenizer.json"):
            make_tokenizer(str(path))


def test_study_order_is_one_sequence_whatever_the_batch_size():
    """data_order "study": runs with different batch sizes read the same windows in the same order, the run's
    seed does not move them, and the last, shorter step continues where the full steps left off."""
    mix = {"knowledge": 0.5, "code": 0.5}
    settings = SETTINGS.model_copy(update={"general_source": "generated"})
    domains = {name: load_domain(name, settings, ByteTokenizer(), 32) for name in mix}
    small = MixtureSampler(domains, mix, 32, seed=1, order_seed=7)
    large = MixtureSampler(domains, mix, 32, seed=2, order_seed=7)

    def rows(sampler, steps, n_rows, name="code", last_rows=None):
        out = []
        for step in range(steps):
            n = last_rows if (last_rows and step == steps - 1) else n_rows
            x, _, counts = sampler.batch(step, n, n_rows)
            start = 0 if name == sorted(mix)[0] else counts[sorted(mix)[0]]
            out.append(x[start : start + counts[name]])
        return np.concatenate(out)

    a = rows(small, 6, 4)  # 6 steps of 2 code rows
    b = rows(large, 3, 8)  # 3 steps of 4 code rows
    assert np.array_equal(a, b)
    c = rows(large, 2, 8, last_rows=4)  # a partial last step reads the next windows
    assert np.array_equal(c, a[: len(c)])
    other = MixtureSampler(domains, mix, 32, seed=1, order_seed=8)
    assert not np.array_equal(rows(other, 3, 8), b)
    run_order = MixtureSampler(domains, mix, 32, seed=1)  # "run": the seed draws the order
    assert not np.array_equal(rows(run_order, 3, 8), rows(MixtureSampler(domains, mix, 32, seed=2), 3, 8))


def test_study_order_crosses_generator_blocks():
    from trainers.data import ORDER_BLOCK

    mix = {"code": 1.0}
    domains = {"code": load_domain("code", SETTINGS, ByteTokenizer(), 16)}
    s = MixtureSampler(domains, mix, 16, seed=0, order_seed=3)
    first = s._study_offsets("code", ORDER_BLOCK - 3, 6)
    assert np.array_equal(first[:3], s._study_offsets("code", ORDER_BLOCK - 3, 3))
    assert np.array_equal(first[3:], s._study_offsets("code", ORDER_BLOCK, 3))


def test_data_order_validated():
    with pytest.raises(ValidationError, match="data_order\n.*expected one of study, run, got 'shuffled'"):
        DataSettings(data_order="shuffled")
