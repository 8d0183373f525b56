"""Training data: one token stream per domain, a deterministic mixture sampler over them, and the skills'
evaluation sets.

Built-in domains (the default mix is knowledge + code; nothing generated stands in for real text):
- "knowledge": the synthetic world of trainers/corpora.py, biographies whose people have Zipf-like
  popularity (`knowledge_popularity`, `knowledge_popularity_offset`, `knowledge_entities`), a stream of
  `domain_tokens` tokens. Skill "knowledge": recall questions sampled from the stream's mention counts.
- "code": real Python, the running interpreter's standard library (`code_source: stdlib`; add
  `+site-packages` for what is installed there; `generated` for the old generated programs), files split
  by a hash of their path, `heldout_percent` of them held out (trainers/python_sources.py). Skill "code":
  NLL of held-out function bodies given their signature and docstring.
- "general": real English, the docstrings and comments of those same files (`general_source: stdlib`;
  `generated` for the old filler grammar), same file split.
Real streams are capped at `domain_tokens` / `heldout_tokens` (tests use tiny caps, so they read a few
files), tokenised once and cached on disk under `cache_dir` (atomic write), keyed by the interpreter, the
files' fingerprint, the settings and the tokenizer: the full stdlib takes ~20 s to parse once per machine,
then well under a second to load.

User data:
- Training domains from files or directories: `corpora={"name": path}` (a name that is also built in
  replaces it): a .txt file, a .jsonl file with a `text` field per line, a .parquet file with a `text`
  column, or a directory of Python sources (*.py, recursively). Tokenised once and cached like the built-in
  real streams; the last 1% of their tokens is held out. A mix may then name the domain.
- Skills with their own evaluation sets: `skill_evals={"skill": path}` (a name that is also built in
  replaces its evaluation set). A .jsonl file of {"prompt": ..., "answer": ...} lines is scored like the
  built-in skills, as the answer tokens' mean NLL given the prompt (an optional numeric "weight" per line
  counts it that many times); a .jsonl file of {"text": ...} lines, a .txt file, a .parquet file with a
  `text` column or a directory of *.py is held-out text, scored as its mean NLL per token. Each is read
  whole (at most `eval_samples` rows). A bad line: InputError naming the file and the line.

Each domain's stream is a 1-D token array (documents separated by EOS). A training row is a window of
seq_len + 1 tokens; the number of rows per domain in a batch is the largest-remainder rounding of mix * rows
(ties to the domain that sorts first). Where the windows start is the data order, `data_order`:
- "study" (the default): one sequence of window offsets per domain, drawn from (data_seed, domain) in
  blocks, which every run of a study reads from its start, whatever its batch size: step k of a run with
  r rows of a domain per step reads that domain's windows k*r .. k*r + r - 1. A run to D tokens reads the
  same text as every other run to D (with this mix), in the same order, and the run's seed draws only
  its initialisation. This is how a real pretraining study reads one shuffled corpus, and it makes the
  data's own sampling noise (which rare facts and files a run happened to see) common to every run
  instead of independent, which narrows the seed spread of a skill that hinges on rare facts, such as
  knowledge (the spread that remains: experiments/README.md, "Seed noise and seed replicas").
- "run": offsets drawn from (run seed, step, domain), so the seed changes the data order too.
Either way the batch of a step is a pure function of (seed, step, mix, batch size, data settings): a
resumed run continues the identical stream with nothing but the step number as its data cursor. Streams
are sampled with replacement; a run longer than its stream revisits text (epochs). The built-in real streams
are small (Python 3.11's standard library: 27.9M tokens of code and 4.2M of prose, as bytes), so a long run
repeats them: every run reports how often it read each domain (RunResult.data_epochs, MixtureSampler.epochs)
and warns past REPEATED_DATA_EPOCHS, where repeated data starts to be worth less than fresh data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from skillscale.atomic import atomic_open
from skillscale.config_types import ConfigModel, Integer, Number, one_of
from skillscale.errors import InputError
from trainers import corpora, python_sources
from trainers.tokenizer import ByteTokenizer

BUILTIN_DOMAINS = ("knowledge", "code", "general")
SKILLS = ("knowledge", "code")  # built-in skills; skill_names(settings) adds the user's
HELDOUT_FRACTION = 0.01  # of a user corpus's tokens
GENERATED_CODE_EVAL = 4096  # most held-out generated programs (code_source "generated"), all excluded from training
CODE_SOURCES = (*python_sources.SOURCES, "generated")
DATA_ORDERS = ("study", "run")
ORDER_BLOCK = 4096  # window offsets drawn per generator call in the study's order (any size gives one order)
TEXT_SUFFIXES_NOTE = ".jsonl (prompt/answer or text lines), .txt, .parquet (text column) or a directory of .py"
DataOrder = one_of(*DATA_ORDERS)
KnowledgeEval = one_of(*corpora.KNOWLEDGE_EVALS)
CodeSource = one_of(*CODE_SOURCES)  # also the general domain's source: the prose of the same files


class DataSettings(ConfigModel):
    """What the data is; identical settings give identical streams and evaluation sets (on one interpreter:
    the code and general domains read its standard library, which differs slightly between versions)."""

    data_seed: Integer = Field(default=0, description="The world, the eval sets, the generated text and (data_order "
                                                      '"study") the order of the training windows.')
    data_order: DataOrder = Field(
        default="study", description='"study": every run reads one window order drawn from data_seed (the run\'s seed '
                                     'draws only its initialisation); "run": the run\'s seed also draws the order (see '
                                     "the module docstring).")
    knowledge_entities: Integer = Field(
        default=300_000, description="People in the knowledge world. The stream mentions only those its popularity "
                                     "reaches (~35,000 of 300,000 in 64M tokens); a larger world lengthens the tail "
                                     "of people mentioned once or twice.")
    knowledge_popularity: Number = Field(
        default=1.2, description="Zipf exponent s of mentions per person: person r is drawn with probability "
                                 "~(r + 1 + offset)^-s. 0 gives every person equal exposure (the "
                                 "memorisation-threshold world of earlier studies).")
    knowledge_popularity_offset: Number = Field(
        default=20.0, description="Zipf-Mandelbrot offset: flattens the head (the most popular person is ~1% of the "
                                  "stream, not ~20%).")
    domain_tokens: Integer = Field(
        default=64_000_000, description="Length of each generated training stream; the cap on each built-in real "
                                        "stream (code ~28M, general ~5M byte tokens of Python 3.11's stdlib fit "
                                        "under the default).")
    heldout_tokens: Integer = Field(
        default=1_048_576, description="Length (cap) of each built-in held-out stream; the domain losses read "
                                       "windows spread evenly over it.")
    eval_samples: Integer = Field(
        default=262_144, description="Per skill: knowledge draws (merged into ~80,000 distinct questions at the "
                                     "defaults), at most this many held-out functions for code (~5,000 exist at the "
                                     "defaults), at most this many rows of a user eval file.")
    knowledge_eval: KnowledgeEval = Field(
        default="recall", description='"recall": training question phrasings; "extract": held-out phrasings.')
    code_source: CodeSource = Field(
        default="stdlib", description='The code domain: "stdlib" (the interpreter\'s standard library), '
                                      '"stdlib+site-packages", "generated".')
    general_source: CodeSource = Field(
        default="stdlib", description="The general domain: prose of the code source's files (\"stdlib\", "
                                      '"stdlib+site-packages"), "generated".')
    heldout_percent: Number = Field(
        default=10.0, description="Percent of real source files held out (by a hash of their path): held-out domain "
                                  "streams, code eval.")
    code_eval_max_chars: Integer = Field(
        default=1024, description="Longest function (signature + docstring + body, characters) in the code eval.")
    skill_evals: dict[str, str] = Field(
        default_factory=dict, description="User skills: skill name -> evaluation file (see the module docstring).")
    corpora: dict[str, str] = Field(
        default_factory=dict, description="User training domains: domain name -> local path of a real corpus.")
    bpe_train_chars: Integer = Field(
        default=8_000_000, description='With tokenizer "bpe:<vocab>": characters of each domain\'s training text the '
                                       "BPE tokenizer learns from.")
    cache_dir: str = Field(
        default="", description='Where tokenised real streams (and trained BPE tokenizers) are cached ("" -> '
                                "~/.cache/skillscale/tokens).")

    @field_validator("knowledge_entities", "domain_tokens", "heldout_tokens", "eval_samples", "code_eval_max_chars",
                     "bpe_train_chars")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"expected a positive integer, got {value}")
        return value

    @field_validator("knowledge_popularity", "knowledge_popularity_offset")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if not value >= 0:
            raise ValueError(f"expected a number >= 0, got {value}")
        return value

    @field_validator("heldout_percent")
    @classmethod
    def _percent(cls, value: float) -> float:
        if not 0 < value < 100:
            raise ValueError(f"expected a number in (0, 100), got {value}")
        return value

    @field_validator("skill_evals", "corpora", mode="before")
    @classmethod
    def _named_paths(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                  for k, v in value.items()):
            raise ValueError(f"expected a mapping of names to file paths, got {value!r}")
        return value

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir or Path.home() / ".cache" / "skillscale" / "tokens").expanduser()


@dataclass
class Domain:
    name: str
    train: np.ndarray  # (n,) int32 token ids
    heldout: np.ndarray  # (m,) int32 token ids


def limit_unique(domains: dict[str, Domain], mix: dict[str, float], unique_tokens: int,
                 seq_len: int) -> dict[str, Domain]:
    """The domains of a run limited to `unique_tokens` distinct training tokens (RunSpec.unique_tokens): each
    domain keeps the first unique_tokens x its mix weight tokens of its stream (at least seq_len + 2, at most all of
    it), so a run of D tokens reads them about D / unique_tokens times over. Held-out text is unchanged."""
    out = {}
    for name, domain in domains.items():
        keep = int(min(len(domain.train), max(seq_len + 2, math.ceil(unique_tokens * mix.get(name, 0.0)))))
        out[name] = dataclasses.replace(domain, train=domain.train[:keep])
    return out


_DOMAIN_CACHE: dict = {}  # process-level: (name, settings json, tokenizer name) -> Domain
_WORLD_CACHE: dict = {}  # (entities, seed) -> corpora.World
_MENTIONS_CACHE: dict = {}  # (knowledge settings, n_chars) -> mention count per person in the training stream


def _encode_docs(tokenizer, docs: list[str]) -> np.ndarray:
    """Token ids of the documents, each followed by EOS. Byte-level fast path: one encode of the join (real
    text has its NUL characters removed when read, so NUL can stand for EOS)."""
    if isinstance(tokenizer, ByteTokenizer):
        ids = np.frombuffer("\x00".join(docs).encode("utf-8") + b"\x00", dtype=np.uint8).astype(np.int32)
        ids[ids == 0] = tokenizer.EOS
        return ids
    parts = []
    for ids in tokenizer.encode_batch_arrays(docs):
        parts.append(ids)
        parts.append(np.asarray([tokenizer.eos_id], dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def world(settings: DataSettings) -> corpora.World:
    key = (settings.knowledge_entities, settings.data_seed)
    if key not in _WORLD_CACHE:
        _WORLD_CACHE[key] = corpora.make_world(settings.knowledge_entities, settings.data_seed)
    return _WORLD_CACHE[key]


def bytes_per_token(tokenizer) -> float:
    """Characters of text per token assumed when sizing a stream of N tokens (4 for a BPE vocabulary)."""
    return 1.0 if tokenizer is None or isinstance(tokenizer, ByteTokenizer) else 4.0


def _knowledge_key(settings: DataSettings, n_chars: int) -> tuple:
    return (settings.knowledge_entities, settings.data_seed, settings.knowledge_popularity,
            settings.knowledge_popularity_offset, n_chars)


def knowledge_documents(settings: DataSettings, n_chars: int, heldout: bool = False) -> list[str]:
    """The knowledge training (or held-out: fresh renderings of the same popularity) biographies."""
    w = world(settings)
    weights = corpora.popularity(len(w), settings.knowledge_popularity, settings.knowledge_popularity_offset)
    seed = settings.data_seed + (1_000_003 if heldout else 0)
    docs, ids = corpora.knowledge_stream(w, seed, n_chars, weights)
    if not heldout:
        _MENTIONS_CACHE[_knowledge_key(settings, n_chars)] = np.bincount(ids, minlength=len(w))
    return docs


def knowledge_mentions(settings: DataSettings, tokenizer=None) -> np.ndarray:
    """(n_entities,) mentions of each person in the knowledge training stream (built if not yet built)."""
    n_chars = int(settings.domain_tokens * bytes_per_token(tokenizer))
    key = _knowledge_key(settings, n_chars)
    if key not in _MENTIONS_CACHE:
        knowledge_documents(settings, n_chars)
    return _MENTIONS_CACHE[key]


# ----------------------------------------------------------------------------- built-in real streams


def _real_builtin_texts(name: str, settings: DataSettings, n_chars: int, n_held_chars: int):
    """(training documents, held-out documents) of the built-in code or general domain from Python sources."""
    source = settings.code_source if name == "code" else settings.general_source
    train_files, held_files = python_sources.split_files(source, settings.heldout_percent)
    if name == "code":
        return (python_sources.read_until(train_files, n_chars),
                python_sources.read_until(held_files, n_held_chars))
    extract = python_sources.ProseExtractor()  # one for both: a held-out paragraph never repeats a trained one
    train = python_sources.read_prose_until(train_files, n_chars, extract)
    return train, python_sources.read_prose_until(held_files, n_held_chars, extract)


def _cached_arrays(cache: Path, build) -> dict[str, np.ndarray]:
    """np.savez arrays at `cache`, built by build() and written atomically when missing or unreadable."""
    if cache.exists():
        try:
            with np.load(cache) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):  # unreadable cache: rebuild it
            pass
    arrays = build()
    with atomic_open(cache) as f:
        np.savez(f, **arrays)
    return arrays


def _builtin_real(name: str, settings: DataSettings, tokenizer) -> Domain:
    source = settings.code_source if name == "code" else settings.general_source
    bpt = bytes_per_token(tokenizer)
    n_chars, n_held = int(settings.domain_tokens * bpt), int(settings.heldout_tokens * bpt)
    files = python_sources.source_files(source)
    key = json.dumps({
        "domain": name, "source": source, "python": sys.version, "roots": [str(r) for _, r in
                                                                           python_sources.roots(source)],
        "files": python_sources.fingerprint(files), "heldout_percent": settings.heldout_percent,
        "n_chars": n_chars, "n_held": n_held, "tokenizer": tokenizer.name,
        "extractor": python_sources.EXTRACTOR_VERSION,
    }, sort_keys=True)
    cache = settings.cache_path / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"

    def build():
        train, held = _real_builtin_texts(name, settings, n_chars, n_held)
        return {"train": _encode_docs(tokenizer, train), "heldout": _encode_docs(tokenizer, held)}

    arrays = _cached_arrays(cache, build)
    return Domain(name, arrays["train"], arrays["heldout"])


def _generated(name: str, settings: DataSettings, tokenizer) -> Domain:
    seed, bpt = settings.data_seed, bytes_per_token(tokenizer)
    n_train, n_held = int(settings.domain_tokens * bpt), int(settings.heldout_tokens * bpt)
    if name == "knowledge":
        train = knowledge_documents(settings, n_train)
        held = knowledge_documents(settings, n_held, heldout=True)
    elif name == "code":
        exclude = {p for p, _ in corpora.code_eval_programs(seed, min(settings.eval_samples, GENERATED_CODE_EVAL))}
        train = corpora.code_documents(seed, n_train, exclude)
        held = corpora.code_documents(seed + 1_000_003, n_held, exclude)
    else:
        train = corpora.general_documents(seed, n_train)
        held = corpora.general_documents(seed + 1_000_003, n_held)
    return Domain(name, _encode_docs(tokenizer, train), _encode_docs(tokenizer, held))


# ----------------------------------------------------------------------------- user corpora


def _read_texts(path: Path, what: str = "corpus") -> list[str]:
    """The documents of a user file or directory (see the module docstring)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.py") if p.is_file())
        if not files:
            raise InputError(f"{what}: directory {str(path)!r} contains no *.py files")
        return [p.read_text(encoding="utf-8", errors="replace").replace("\x00", "") for p in files]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for bad files
            raise InputError(f"{what}: {str(path)!r} is not a readable parquet file ({exc})") from exc
        if "text" not in table.column_names:
            raise InputError(f"{what}: {str(path)!r} has no 'text' column (columns: {table.column_names})")
        return [t.replace("\x00", "") for t in table.column("text").to_pylist() if t]
    if suffix == ".jsonl":
        return [row["text"].replace("\x00", "") for _, row in _jsonl_rows(path, what, ("text",))]
    return [path.read_text(encoding="utf-8", errors="replace").replace("\x00", "")]


def _jsonl_rows(path: Path, what: str, required: tuple[str, ...]):
    """(line number, row) of a JSONL file whose rows are objects with string fields `required`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{what}: {str(path)!r} line {i} is not JSON ({exc.msg})") from exc
            missing = [k for k in required if not isinstance(row, dict) or not isinstance(row.get(k), str)]
            if missing:
                raise InputError(f"{what}: {str(path)!r} line {i} has no string {' or '.join(map(repr, missing))} "
                                 "field")
            yield i, row


def _real(name: str, path_str: str, settings: DataSettings, tokenizer, seq_len: int) -> Domain:
    path = Path(path_str).expanduser()
    if not path.exists():
        raise InputError(
            f"corpus {name!r}: file {str(path)!r} not found; give an existing .txt, .jsonl, "
            ".parquet file or a directory of .py files"
        )
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{tokenizer.name}".encode())
    cache = settings.cache_path / f"{name}-{key.hexdigest()[:16]}.npy"
    tokens = None
    if cache.exists():
        try:
            tokens = np.load(cache)
        except (OSError, ValueError):  # unreadable cache: rebuild it
            tokens = None
    if tokens is None:
        tokens = _encode_docs(tokenizer, _read_texts(path))
        with atomic_open(cache) as f:
            np.save(f, tokens)
    n_held = max(seq_len + 1, int(len(tokens) * HELDOUT_FRACTION))
    if len(tokens) < n_held + 2 * (seq_len + 1):
        raise InputError(
            f"corpus {name!r}: {str(path)!r} has {len(tokens)} tokens; need at least "
            f"{n_held + 2 * (seq_len + 1)} for seq_len {seq_len}"
        )
    return Domain(name, tokens[:-n_held], tokens[-n_held:])


def domain_names(settings: DataSettings) -> tuple[str, ...]:
    """Every domain a mix may name: the built-in ones and the user's corpora."""
    return tuple(sorted(set(BUILTIN_DOMAINS) | set(settings.corpora)))


def load_domain(name: str, settings: DataSettings, tokenizer, seq_len: int) -> Domain:
    """The token streams of a domain (process-level cache; real streams also on disk)."""
    key = (name, json.dumps(settings.model_dump(), sort_keys=True), tokenizer.name, seq_len)
    if key not in _DOMAIN_CACHE:
        if name in settings.corpora:
            _DOMAIN_CACHE[key] = _real(name, settings.corpora[name], settings, tokenizer, seq_len)
        elif name in ("code", "general") and (settings.code_source if name == "code"
                                              else settings.general_source) != "generated":
            _DOMAIN_CACHE[key] = _builtin_real(name, settings, tokenizer)
        elif name in BUILTIN_DOMAINS:
            _DOMAIN_CACHE[key] = _generated(name, settings, tokenizer)
        else:
            raise InputError(
                f"mix: unknown domain {name!r}; built-in domains are {', '.join(BUILTIN_DOMAINS)}"
                " (or give a corpus path for it)"
            )
    return _DOMAIN_CACHE[key]


def domain_texts(name: str, settings: DataSettings, n_chars: int) -> list[str]:
    """Raw training documents of a domain, about n_chars characters (what a BPE tokenizer is trained on)."""
    if name in settings.corpora:
        path = Path(settings.corpora[name]).expanduser()
        if not path.exists():
            raise InputError(f"corpus {name!r}: file {str(path)!r} not found")
        docs, total = [], 0
        for d in _read_texts(path):
            docs.append(d[: n_chars - total])
            total += len(docs[-1])
            if total >= n_chars:
                break
        return docs
    if name == "knowledge":
        return knowledge_documents(settings, n_chars, heldout=True)  # the same people and templates
    source = settings.code_source if name == "code" else settings.general_source
    if name not in BUILTIN_DOMAINS:
        raise InputError(f"mix: unknown domain {name!r}; known domains are {', '.join(domain_names(settings))}")
    if source == "generated":
        return corpora.code_documents(settings.data_seed, n_chars, set()) if name == "code" else \
            corpora.general_documents(settings.data_seed, n_chars)
    return _real_builtin_texts(name, settings, n_chars, 0)[0]


def validate_mix(mix: dict, settings: DataSettings) -> dict[str, float]:
    """The mix as {domain: weight}, checked: known domains, weights >= 0 summing to 1 (within 1e-6)."""
    if not mix:
        raise InputError("mix: empty; give domain=weight pairs summing to 1, e.g. knowledge=0.5,code=0.5")
    known = set(domain_names(settings))
    for name, weight in mix.items():
        if name not in known:
            raise InputError(f"mix: unknown domain {name!r}; known domains are {', '.join(sorted(known))}")
        if not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise InputError(f"mix: weight of {name!r} must be a number in [0, 1], got {weight!r}")
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"mix: weights must sum to 1, got {total:.6g} ({mix})")
    return {k: float(v) for k, v in sorted(mix.items())}


def rows_per_domain(mix: dict[str, float], n_rows: int) -> dict[str, int]:
    """Largest-remainder (Hamilton) rounding of mix * n_rows; ties go to the domain that sorts first."""
    names = sorted(mix)
    quotas = [mix[n] * n_rows for n in names]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(names)), key=lambda i: (-(quotas[i] - counts[i]), names[i]))
    for i in order[: n_rows - sum(counts)]:
        counts[i] += 1
    return dict(zip(names, counts, strict=True))


class MixtureSampler:
    """Batches for step k: rows per domain by rows_per_domain, windows in the data order (module docstring).

    `order_seed` None: the run's order ((seed, step, domain) per step); an int: the study's order, one
    sequence of window offsets per domain drawn from (order_seed, domain), read from its start."""

    def __init__(self, domains: dict[str, Domain], mix: dict[str, float], seq_len: int, seed: int,
                 order_seed: int | None = None):
        self.domains, self.mix, self.seq_len, self.seed = domains, dict(sorted(mix.items())), seq_len, seed
        self.order_seed = order_seed
        self._blocks: dict[tuple[str, int], np.ndarray] = {}  # the study order's newest blocks, per domain
        for name in self.mix:
            if len(domains[name].train) < seq_len + 2:
                raise InputError(
                    f"domain {name!r}: stream of {len(domains[name].train)} tokens is shorter "
                    f"than seq_len + 2 = {seq_len + 2}"
                )

    def epochs(self, n_tokens: float, batch_rows: int) -> dict[str, float]:
        """How many times over a run of n_tokens tokens, batch_rows rows a step, reads each domain's training
        stream (its rows per step as rows_per_domain gives them; windows overlap by one token, ignored)."""
        rows = rows_per_domain(self.mix, batch_rows)
        return {name: n_tokens * rows[name] / batch_rows / max(len(self.domains[name].train), 1)
                for name in self.mix}

    def batch(self, step: int, n_rows: int, full_rows: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """(inputs (n_rows, T), targets (n_rows, T), rows per domain) for optimizer step `step`.

        `full_rows`: the rows of the run's full steps (default n_rows); only the last step of a run is
        shorter, and in the study's order the steps before it set where it starts reading."""
        counts = rows_per_domain(self.mix, n_rows)
        full = rows_per_domain(self.mix, full_rows or n_rows)
        window = np.arange(self.seq_len + 1)
        parts = []
        for name, count in counts.items():
            if count == 0:
                continue
            stream = self.domains[name].train
            if self.order_seed is None:
                rng = np.random.default_rng([self.seed, step, zlib.crc32(name.encode())])
                starts = rng.integers(0, len(stream) - self.seq_len - 1, size=count)
            else:
                starts = self._study_offsets(name, step * full[name], count)
            parts.append(stream[starts[:, None] + window[None, :]])  # (count, T+1)
        rows = np.concatenate(parts)
        return rows[:, :-1], rows[:, 1:], counts

    def _study_offsets(self, name: str, first: int, count: int) -> np.ndarray:
        """Windows first .. first + count - 1 of the study's order of domain `name`."""
        high = len(self.domains[name].train) - self.seq_len - 1
        blocks = range(first // ORDER_BLOCK, (first + count - 1) // ORDER_BLOCK + 1)
        drawn = []
        for b in blocks:
            key = (name, b)
            if key not in self._blocks:
                if len(self._blocks) > 4 * len(self.mix):
                    self._blocks.clear()  # a run reads forward: older blocks are not wanted again
                rng = np.random.default_rng([self.order_seed, b, zlib.crc32(name.encode())])
                self._blocks[key] = rng.integers(0, high, size=ORDER_BLOCK)
            drawn.append(self._blocks[key])
        offset = first - blocks[0] * ORDER_BLOCK
        return np.concatenate(drawn)[offset : offset + count]


def heldout_windows(domain: Domain, seq_len: int, max_rows: int) -> np.ndarray:
    """Non-overlapping (rows, T+1) windows spread evenly over the held-out stream (its slots of seq_len
    tokens, every k-th one), so a real domain's loss reads many held-out files, not the first one."""
    slots = (len(domain.heldout) - 1) // seq_len
    n = min(max_rows, slots)
    if n <= 0:
        raise InputError(f"domain {domain.name!r}: held-out stream shorter than seq_len + 1")
    starts = (np.arange(n) * slots // n) * seq_len
    return np.stack([domain.heldout[i : i + seq_len + 1] for i in starts])


# ----------------------------------------------------------------------------- skills


def skill_names(settings: DataSettings) -> tuple[str, ...]:
    """Every skill the torch backend evaluates: the built-in ones and the user's skill_evals."""
    return tuple(dict.fromkeys([*SKILLS, *sorted(settings.skill_evals)]))


def _user_skill_examples(skill: str, path_str: str, settings: DataSettings) -> list[tuple]:
    what = f"skill_evals.{skill}"
    path = Path(path_str).expanduser()
    if not path.exists():
        raise InputError(f"{what}: file {str(path)!r} not found; give {TEXT_SUFFIXES_NOTE}")
    if path.is_file() and path.suffix.lower() == ".jsonl":
        rows = []
        with open(path, encoding="utf-8", errors="replace") as f:
            first = next((ln for ln in f if ln.strip()), "")
        try:
            is_text = isinstance(json.loads(first), dict) and "text" in json.loads(first) and \
                "prompt" not in json.loads(first)
        except json.JSONDecodeError:
            is_text = False  # _jsonl_rows reports the line
        if is_text:
            texts = [row["text"] for _, row in _jsonl_rows(path, what, ("text",))]
            return [("", t) for t in texts[: settings.eval_samples] if t]
        for i, row in _jsonl_rows(path, what, ("prompt", "answer")):
            weight = row.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
                raise InputError(f"{what}: {str(path)!r} line {i}: 'weight' must be a positive number, got {weight!r}")
            if not row["answer"]:
                raise InputError(f"{what}: {str(path)!r} line {i}: 'answer' is empty")
            rows.append((row["prompt"], row["answer"], float(weight)))
            if len(rows) >= settings.eval_samples:
                break
        if not rows:
            raise InputError(f"{what}: {str(path)!r} has no rows")
        return rows
    texts = [t for t in _read_texts(path, what) if t]
    if not texts:
        raise InputError(f"{what}: {str(path)!r} has no text")
    return [("", t) for t in texts[: settings.eval_samples]]


_CODE_EVAL_CACHE: dict = {}


def skill_examples(skill: str, settings: DataSettings, tokenizer=None) -> list[tuple]:
    """A skill's held-out evaluation set: (prompt, answer) or (prompt, answer, weight) rows, scored as the
    answer tokens' NLL given the prompt; a row with an empty prompt is held-out text, every token scored.
    `tokenizer` only sizes the knowledge stream whose mentions the knowledge questions sample (bytes if None)."""
    if skill in settings.skill_evals:
        return _user_skill_examples(skill, settings.skill_evals[skill], settings)
    if skill == "knowledge":
        return corpora.knowledge_questions(world(settings), knowledge_mentions(settings, tokenizer),
                                           settings.data_seed, settings.eval_samples, phrasing=settings.knowledge_eval)
    if skill == "code":
        if settings.code_source == "generated":
            return corpora.code_eval_programs(settings.data_seed, min(settings.eval_samples, GENERATED_CODE_EVAL))
        key = (settings.code_source, settings.heldout_percent, settings.eval_samples, settings.code_eval_max_chars)
        if key not in _CODE_EVAL_CACHE:
            held = python_sources.split_files(settings.code_source, settings.heldout_percent)[1]
            _CODE_EVAL_CACHE[key] = python_sources.code_eval_examples(held, settings.eval_samples,
                                                                      settings.code_eval_max_chars)
            if not _CODE_EVAL_CACHE[key]:
                raise InputError(f"data.code_source: no held-out functions in {settings.code_source!r} "
                                 f"(heldout_percent {settings.heldout_percent})")
        return _CODE_EVAL_CACHE[key]
    raise InputError(f"skill: unknown {skill!r}; skills are {', '.join(skill_names(settings))}")
