"""Training data: one token stream per domain, and a deterministic mixture sampler over them.

Domains are the generated ones in trainers/corpora.py ("knowledge", "code", "general") or real corpora
given as `corpora={"name": path}`: a .txt file, a .jsonl file or a .parquet file with a `text` column, or
a directory of Python sources (*.py, recursively; a real code domain). Real corpora are tokenised once
and cached as .npy under `cache_dir` (atomic write); the last 1% of their tokens is held out.

Each domain's stream is a 1-D token array (documents separated by EOS). A training row is a window of
seq_len + 1 tokens at an offset drawn from a generator seeded by (seed, step, domain); the number of
rows per domain in a batch is the largest-remainder rounding of mix * rows (ties to the domain that
sorts first). So the batch of a step is a pure function of (seed, step, mix, data settings): a resumed
run continues the identical stream with nothing but the step number as its data cursor.

Generated streams are `domain_tokens` long and are sampled with replacement; a run longer than that
revisits text (epochs). The knowledge stream always holds at least one full pass over the world.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from skillscale.atomic import atomic_open
from skillscale.errors import InputError
from trainers import corpora
from trainers.tokenizer import ByteTokenizer

BUILTIN_DOMAINS = ("knowledge", "code", "general")
SKILLS = ("knowledge", "code")
HELDOUT_FRACTION = 0.01  # of a real corpus's tokens


@dataclass(frozen=True)
class DataSettings:
    """What the data is; identical settings give identical streams and evaluation sets."""

    data_seed: int = 0  # the world, the eval sets and the generated text (not the run's sampling order)
    knowledge_entities: int = 20_000
    domain_tokens: int = 16_000_000  # length of each generated training stream
    heldout_tokens: int = 131_072  # length of each generated held-out stream
    eval_samples: int = 256  # QA prompts / programs per skill
    knowledge_eval: str = "recall"  # "recall": training question phrasings; "extract": held-out phrasings
    corpora: dict = field(default_factory=dict)  # domain name -> local path of a real corpus
    cache_dir: str = ""  # where tokenised real corpora are cached ("" -> ~/.cache/skillscale/tokens)

    def __post_init__(self):
        for name in ("knowledge_entities", "domain_tokens", "heldout_tokens", "eval_samples"):
            if int(getattr(self, name)) <= 0:
                raise InputError(f"data.{name}: expected a positive integer, got {getattr(self, name)}")
        if self.knowledge_eval not in corpora.KNOWLEDGE_EVALS:
            raise InputError(f"data.knowledge_eval: expected one of {', '.join(corpora.KNOWLEDGE_EVALS)}, "
                             f"got {self.knowledge_eval!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Domain:
    name: str
    train: np.ndarray  # (n,) int32 token ids
    heldout: np.ndarray  # (m,) int32 token ids


_DOMAIN_CACHE: dict = {}  # process-level: (name, settings json, tokenizer name) -> Domain
_WORLD_CACHE: dict = {}


def _encode_docs(tokenizer, docs: list[str]) -> np.ndarray:
    """Token ids of the documents, each followed by EOS. Byte-level fast path: one encode of the join."""
    if isinstance(tokenizer, ByteTokenizer):
        ids = np.frombuffer("\x00".join(docs).encode("utf-8") + b"\x00", dtype=np.uint8).astype(np.int32)
        ids[ids == 0] = tokenizer.EOS  # generated text never contains NUL; real text goes the slow way
        return ids
    parts = []
    for d in docs:
        parts.append(tokenizer.encode_array(d))
        parts.append(np.asarray([tokenizer.eos_id], dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def world(settings: DataSettings) -> list:
    key = (settings.knowledge_entities, settings.data_seed)
    if key not in _WORLD_CACHE:
        _WORLD_CACHE[key] = corpora.make_world(settings.knowledge_entities, settings.data_seed)
    return _WORLD_CACHE[key]


def _bytes_per_token(tokenizer) -> float:
    return 1.0 if isinstance(tokenizer, ByteTokenizer) else 4.0


def _generated(name: str, settings: DataSettings, tokenizer) -> Domain:
    seed, bpt = settings.data_seed, _bytes_per_token(tokenizer)
    n_train, n_held = int(settings.domain_tokens * bpt), int(settings.heldout_tokens * bpt)
    if name == "knowledge":
        w = world(settings)
        train = corpora.knowledge_documents(w, seed, n_train)
        held = corpora.knowledge_documents(w, seed + 1_000_003, n_held)
    elif name == "code":
        exclude = {p for p, _ in corpora.code_eval_programs(seed, settings.eval_samples)}
        train = corpora.code_documents(seed, n_train, exclude)
        held = corpora.code_documents(seed + 1_000_003, n_held, exclude)
    else:
        train = corpora.general_documents(seed, n_train)
        held = corpora.general_documents(seed + 1_000_003, n_held)
    return Domain(name, _encode_docs(tokenizer, train), _encode_docs(tokenizer, held))


def _read_texts(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.py") if p.is_file())
        if not files:
            raise InputError(f"corpus: directory {str(path)!r} contains no *.py files")
        return [p.read_text(encoding="utf-8", errors="replace") for p in files]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for bad files
            raise InputError(f"corpus: {str(path)!r} is not a readable parquet file ({exc})") from exc
        if "text" not in table.column_names:
            raise InputError(f"corpus: {str(path)!r} has no 'text' column (columns: {table.column_names})")
        return [t for t in table.column("text").to_pylist() if t]
    if suffix == ".jsonl":
        texts = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"corpus: {str(path)!r} line {i} is not JSON ({exc.msg})") from exc
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise InputError(f"corpus: {str(path)!r} line {i} has no string 'text' field")
                texts.append(row["text"])
        return texts
    return [path.read_text(encoding="utf-8", errors="replace")]


def _real(name: str, path_str: str, settings: DataSettings, tokenizer, seq_len: int) -> Domain:
    path = Path(path_str).expanduser()
    if not path.exists():
        raise InputError(
            f"corpus {name!r}: file {str(path)!r} not found; give an existing .txt, .jsonl, "
            ".parquet file or a directory of .py files"
        )
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{tokenizer.name}".encode())
    cache_dir = Path(settings.cache_dir or Path.home() / ".cache" / "skillscale" / "tokens").expanduser()
    cache = cache_dir / f"{name}-{key.hexdigest()[:16]}.npy"
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


def load_domain(name: str, settings: DataSettings, tokenizer, seq_len: int) -> Domain:
    """The token streams of a domain (process-level cache)."""
    key = (name, json.dumps(settings.to_dict(), sort_keys=True), tokenizer.name, seq_len)
    if key not in _DOMAIN_CACHE:
        if name in settings.corpora:
            _DOMAIN_CACHE[key] = _real(name, settings.corpora[name], settings, tokenizer, seq_len)
        elif name in BUILTIN_DOMAINS:
            _DOMAIN_CACHE[key] = _generated(name, settings, tokenizer)
        else:
            raise InputError(
                f"mix: unknown domain {name!r}; built-in domains are {', '.join(BUILTIN_DOMAINS)}"
                " (or give a corpus path for it)"
            )
    return _DOMAIN_CACHE[key]


def validate_mix(mix: dict, settings: DataSettings) -> dict[str, float]:
    """The mix as {domain: weight}, checked: known domains, weights >= 0 summing to 1 (within 1e-6)."""
    if not mix:
        raise InputError("mix: empty; give domain=weight pairs summing to 1, e.g. knowledge=0.5,code=0.5")
    known = set(BUILTIN_DOMAINS) | set(settings.corpora)
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
    """Batches for (seed, step): rows per domain by rows_per_domain, random windows within each stream."""

    def __init__(self, domains: dict[str, Domain], mix: dict[str, float], seq_len: int, seed: int):
        self.domains, self.mix, self.seq_len, self.seed = domains, dict(sorted(mix.items())), seq_len, seed
        for name in self.mix:
            if len(domains[name].train) < seq_len + 2:
                raise InputError(
                    f"domain {name!r}: stream of {len(domains[name].train)} tokens is shorter "
                    f"than seq_len + 2 = {seq_len + 2}"
                )

    def batch(self, step: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """(inputs (n_rows, T), targets (n_rows, T), rows per domain) for optimizer step `step`."""
        counts = rows_per_domain(self.mix, n_rows)
        window = np.arange(self.seq_len + 1)
        parts = []
        for name, count in counts.items():
            if count == 0:
                continue
            stream = self.domains[name].train
            rng = np.random.default_rng([self.seed, step, zlib.crc32(name.encode())])
            starts = rng.integers(0, len(stream) - self.seq_len - 1, size=count)
            parts.append(stream[starts[:, None] + window[None, :]])  # (count, T+1)
        rows = np.concatenate(parts)
        return rows[:, :-1], rows[:, 1:], counts


def heldout_windows(domain: Domain, seq_len: int, max_rows: int) -> np.ndarray:
    """Non-overlapping (rows, T+1) windows from the start of the held-out stream."""
    n = min(max_rows, (len(domain.heldout) - 1) // seq_len)
    if n <= 0:
        raise InputError(f"domain {domain.name!r}: held-out stream shorter than seq_len + 1")
    return np.stack([domain.heldout[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)])


def skill_examples(skill: str, settings: DataSettings) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of a skill's held-out evaluation set."""
    if skill == "knowledge":
        return corpora.knowledge_questions(world(settings), settings.data_seed, settings.eval_samples,
                                           phrasing=settings.knowledge_eval)
    if skill == "code":
        return corpora.code_eval_programs(settings.data_seed, settings.eval_samples)
    raise InputError(f"skill: unknown {skill!r}; skills are {', '.join(SKILLS)}")
