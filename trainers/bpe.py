"""A byte-level BPE tokenizer trained on the study's own corpora (`tokenizer: "bpe:<vocab_size>"`).

The alternative to the byte tokenizer: trained with the Hugging Face `tokenizers` library (byte-level
pre-tokenizer, as GPT-2's, so every string is encodable; one special token, `<|endoftext|>`, the EOS) on
about `bpe_train_chars` characters of each domain a study's data settings know: the built-in ones
(knowledge biographies, stdlib code, stdlib prose, or their generated versions) and the user's corpora,
in domain-name order. Held-out files are never read (the code and general texts come from the training
split; the knowledge text is a held-out rendering of the same world, which holds no evaluation answers
beyond what training states anyway).

Cached as `<cache_dir>/bpe-<key>.json`, where the key hashes everything the result depends on: the vocab
size, the data settings, the interpreter (its stdlib), the source files' fingerprint, the user corpora's
paths, sizes and mtimes, and the `tokenizers` version. Training is deterministic for a given input (the
library's merge order breaks ties by the pair's bytes; tests/trainers/test_bpe.py trains twice and compares
the files), so a cache miss on another machine rebuilds the same tokenizer from the same inputs.

    from trainers.bpe import make_tokenizer
    tok = make_tokenizer("bpe:8192", data_settings)      # trains once (seconds to a minute), then loads
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from skillscale.atomic import atomic_write_text
from skillscale.errors import InputError
from trainers.tokenizer import HFTokenizer, load_tokenizer

EOS = "<|endoftext|>"
MIN_VOCAB = 257 + 1  # the 256 byte symbols, EOS, and at least one merge
BPE_VERSION = 1  # bump when the training recipe below changes (part of the cache key)


def parse_spec(spec: str) -> int:
    """The vocabulary size of a "bpe:<vocab_size>" spelling."""
    text = spec.removeprefix("bpe:")
    try:
        vocab = int(text.replace("_", ""))
    except ValueError:
        vocab = 0
    if vocab < MIN_VOCAB or vocab > 2**20:
        raise InputError(f"tokenizer: expected 'bpe:<vocab size>' with a size in [{MIN_VOCAB}, {2**20}], got {spec!r}")
    return vocab


def _inputs_key(vocab: int, settings) -> str:
    import tokenizers

    from trainers import data, python_sources

    sources = {}
    for name, source in (("code", settings.code_source), ("general", settings.general_source)):
        if source != "generated" and name not in settings.corpora:
            sources[name] = python_sources.fingerprint(python_sources.source_files(source))
    user = {}
    for name, path in sorted(settings.corpora.items()):
        p = Path(path).expanduser()
        st = p.stat() if p.exists() else None
        user[name] = [str(p.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None]
    payload = {
        "vocab": vocab, "settings": {k: v for k, v in settings.model_dump().items() if k != "cache_dir"},
        "python": sys.version, "sources": sources, "corpora": user,
        "domains": data.domain_names(settings), "tokenizers": tokenizers.__version__, "recipe": BPE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_bpe(vocab: int, texts: list[str]):
    """A byte-level BPE `tokenizers.Tokenizer` with `vocab` entries trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2, show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def bpe_tokenizer_path(spec: str, settings) -> Path:
    """The cached tokenizer JSON for `spec` ("bpe:<vocab>") and the data settings, trained if missing."""
    from trainers import data

    try:
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise InputError("tokenizer: 'bpe:...' needs the 'tokenizers' package (pip install tokenizers); "
                         "or use 'bytes'") from exc
    vocab = parse_spec(spec)
    path = settings.cache_path / f"bpe-{vocab}-{_inputs_key(vocab, settings)}.json"
    if path.is_file():
        return path
    texts = []
    for name in data.domain_names(settings):
        texts += data.domain_texts(name, settings, settings.bpe_train_chars)
    if not texts:
        raise InputError("tokenizer: no text to train the BPE tokenizer on")
    tok = train_bpe(vocab, texts)
    atomic_write_text(path, tok.to_str())
    return path


def make_tokenizer(spec: str = "bytes", data_settings=None):
    """The study's tokenizer: 'bytes' (default); 'bpe:<vocab_size>' (e.g. 'bpe:8192'): a byte-level BPE trained on
    the corpora of `data_settings` (trainers.data.DataSettings; its defaults if None) and cached in its cache_dir;
    or a path to a tokenizers JSON file."""
    if spec.startswith("bpe:"):
        from trainers.data import DataSettings

        return HFTokenizer(bpe_tokenizer_path(spec, data_settings or DataSettings()))
    return load_tokenizer(spec)
