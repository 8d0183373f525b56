"""Tokenizers: byte-level by default (no download), a byte-level BPE trained on the study's corpora
("bpe:<vocab_size>", trainers/bpe.py, which also holds make_tokenizer: the one entry for every kind),
or a Hugging Face `tokenizers` JSON file.

Byte-level: ids 0..255 are the UTF-8 bytes, then 4 specials (BOS, EOS, PAD, SEP); vocab 260.
Concatenating the ids of two strings equals the ids of their concatenation, which the skill
evaluation relies on (prompt and answer are encoded separately).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skillscale.errors import InputError


class ByteTokenizer:
    name = "bytes"
    BOS, EOS, PAD, SEP = 256, 257, 258, 259
    vocab_size = 260

    @property
    def eos_id(self) -> int:
        return self.EOS

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A `tokenizers` JSON file (e.g. a GPT-2 or Llama tokenizer.json). Imported lazily."""

    EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"tokenizer: file {str(path)!r} not found; pass a tokenizers JSON file, 'bpe:<vocab size>' or 'bytes'"
            )
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise InputError(
                "tokenizer: the 'tokenizers' package is not installed; pip install tokenizers, "
                "or use the byte-level tokenizer"
            ) from exc
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises its own exception types
            raise InputError(f"tokenizer: {str(path)!r} is not a valid tokenizers JSON file ({exc})") from exc
        self.name = f"hf:{path.resolve()}"
        self.vocab_size = self._tok.get_vocab_size()
        ids = [self._tok.token_to_id(n) for n in self.EOS_NAMES]
        ids = [i for i in ids if i is not None]
        if not ids:
            raise InputError(f"tokenizer: {str(path)!r} has none of the end-of-text tokens {self.EOS_NAMES}")
        self.eos_id = ids[0]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int32)

    def encode_batch_arrays(self, texts: list[str], chunk: int = 1024) -> list[np.ndarray]:
        """encode_array of each text, through the library's parallel batch encoder."""
        out = []
        for i in range(0, len(texts), chunk):
            out += [np.asarray(e.ids, dtype=np.int32)
                    for e in self._tok.encode_batch(texts[i : i + chunk], add_special_tokens=False)]
        return out

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))


def load_tokenizer(spec: str = "bytes"):
    """'bytes' (default) or the path of a tokenizers JSON file. A BPE trained on the study's corpora
    ('bpe:<vocab_size>') needs the data settings: trainers.bpe.make_tokenizer builds every kind."""
    if spec in ("bytes", "byte", ""):
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        raise InputError(f"tokenizer: {spec!r} is trained on the study's corpora; build it with "
                         "trainers.bpe.make_tokenizer(spec, data_settings)")
    return HFTokenizer(spec)
