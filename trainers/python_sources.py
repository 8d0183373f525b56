"""Real text that exists offline on every machine: the Python sources of the running interpreter.

The code and general domains' default sources (trainers/data.py). Nothing is downloaded:

- Files: every `*.py` under `sysconfig.get_paths()["stdlib"]` (its own `site-packages`/`dist-packages`
  and `__pycache__` excluded), and with `"stdlib+site-packages"` also under the `purelib`/`platlib`
  directories (what is installed there differs machine to machine: opt-in).
- Split: a file is held out when the SHA-256 of its key (`stdlib/<path relative to the root>`, e.g.
  `stdlib/json/decoder.py`) falls in the first `heldout_percent` percent of hash space; files are read in
  the order of that hash, so a size cap takes a pseudo-random, not an alphabetical, slice. The rule reads
  only the relative path: a file both interpreters ship is on the same side of the split everywhere.
  CI runs Python 3.11 and the GPU machine 3.12, whose standard libraries differ slightly (modules added,
  removed, edited), so their streams are not identical; within one interpreter they are reproducible.
- Code: each file's text is a document (NUL characters dropped). The code skill's evaluation set is the
  functions of held-out files, cut with `ast`: the prompt is the signature and docstring (when there is
  one), the answer the rest of the body, both dedented to the `def` line. What is scored is the NLL of
  real, never-trained code given its interface, which a model learns gradually, unlike generated
  programs that are either executed right or not.
- Prose (the general domain): the English of the same files, in source order: docstrings and other
  long string constants that read as text (e.g. `pydoc_data/topics.py`, the language reference), and
  runs of full-line comments joined into paragraphs; doctest lines (`>>>`, `...` and their output) are
  dropped and paragraphs that repeat verbatim (licence headers) are kept once. About 6 MB on
  Python 3.11. Parsing every file costs ~20 s on one core, which is why trainers/data.py caches the
  tokenised result on disk.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import re
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

from skillscale.errors import InputError

SOURCES = ("stdlib", "stdlib+site-packages")
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
EXTRACTOR_VERSION = 1  # bump when the extraction below changes what it returns (part of the cache key)


@dataclass(frozen=True)
class SourceFile:
    key: str  # "<root label>/<relative path>": what the split and the order hash
    path: Path

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()

    def heldout(self, heldout_percent: float) -> bool:
        return int(self.digest[:8], 16) < heldout_percent / 100 * 16**8

    def read(self) -> str:
        return self.path.read_bytes().decode("utf-8", errors="replace").replace("\x00", "")


def roots(sources: str) -> list[tuple[str, Path]]:
    """(label, directory) pairs for a source spelling ("stdlib" or "stdlib+site-packages")."""
    if sources not in SOURCES:
        raise InputError(f"python sources: expected one of {', '.join(SOURCES)}, got {sources!r}")
    paths = sysconfig.get_paths()
    out = [("stdlib", Path(paths["stdlib"]))]
    if sources == "stdlib+site-packages":
        for label in ("purelib", "platlib"):
            p = Path(paths[label])
            if p.is_dir() and all(p.resolve() != q.resolve() for _, q in out):
                out.append(("site-packages", p))
    return out


def source_files(sources: str) -> list[SourceFile]:
    """Every source file, ordered by the hash of its key (deterministic, independent of the file system)."""
    files: dict[str, SourceFile] = {}
    for label, root in roots(sources):
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):  # pruned walk: the stdlib may contain site-packages
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and (label != "stdlib" or d not in SKIP_DIRS)]
            for name in filenames:
                path = Path(dirpath) / name
                if name.endswith(".py") and path.is_file():
                    key = f"{label}/{path.relative_to(root).as_posix()}"
                    files.setdefault(key, SourceFile(key, path))
    if not files:
        raise InputError(f"python sources: no *.py files under {[str(r) for _, r in roots(sources)]}")
    return sorted(files.values(), key=lambda f: f.digest)


def split_files(sources: str, heldout_percent: float) -> tuple[list[SourceFile], list[SourceFile]]:
    """(training files, held-out files), each in hash order."""
    files = source_files(sources)
    held = [f for f in files if f.heldout(heldout_percent)]
    return [f for f in files if not f.heldout(heldout_percent)], held


def fingerprint(files: list[SourceFile]) -> str:
    """Changes when any file is added, removed or edited (keys, sizes, mtimes)."""
    h = hashlib.sha256()
    for f in files:
        st = f.path.stat()
        h.update(f"{f.key}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_until(files: list[SourceFile], n_chars: int, extract=None) -> list[str]:
    """Documents from `files` in order (each file's text, or extract(text) when given, skipped when empty)
    until n_chars characters are collected (the last one cut to fit: a tiny cap reads a few files)."""
    docs, total = [], 0
    for f in files:
        if total >= n_chars:
            break
        text = f.read()
        if extract is not None:
            text = extract(text)
        if text:
            docs.append(text[: n_chars - total])
            total += len(docs[-1])
    return docs


# ----------------------------------------------------------------------------- code eval: function bodies


def _parse(text: str) -> ast.Module | None:
    """The module's syntax tree, or None for the few deliberately invalid files; silent about the invalid escape
    sequences of old test modules (a SyntaxWarning on Python 3.12, printed once per string otherwise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError):
            return None


def _strip_indent(lines: list[str], indent: int) -> list[str]:
    """Remove `indent` leading spaces where present (textwrap.dedent gives up on strings at column 0)."""
    return [ln.lstrip(" ") if not ln.strip() else ln[indent:] if ln[:indent].strip() == "" else ln for ln in lines]


def function_examples(text: str, max_chars: int, min_answer_chars: int = 24) -> list[tuple[str, str]]:
    """(signature + docstring, rest of the body) for every function of a module's source, in source order.

    Functions that do not parse as part of the module, whose body after the docstring is shorter than
    min_answer_chars, or whose whole text is longer than max_chars are skipped."""
    tree = _parse(text)
    if tree is None:  # the stdlib ships a few deliberately invalid files (lib2to3 test data)
        return []
    lines = text.splitlines(keepends=True)
    out = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.body]
    for node in sorted(functions, key=lambda n: n.lineno):  # ast.walk is breadth-first
        first = node.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) and \
            isinstance(first.value.value, str)
        body = node.body[1:] if has_doc else node.body
        if not body:
            continue
        start = node.lineno - 1  # the `def` line (decorators are not part of the prompt)
        split = (first.end_lineno if has_doc else body[0].lineno - 1)  # the prompt ends before this line index
        if split <= start:  # `def f(): return 1` on one line
            continue
        indent = len(lines[start]) - len(lines[start].lstrip(" "))
        block = _strip_indent(lines[start : node.end_lineno], indent)
        prompt, answer = "".join(block[: split - start]), "".join(block[split - start :])
        if not answer.endswith("\n"):
            answer += "\n"
        if len(answer.strip()) < min_answer_chars or len(prompt) + len(answer) > max_chars:
            continue
        out.append((prompt, answer))
    return out


def code_eval_examples(files: list[SourceFile], n: int, max_chars: int) -> list[tuple[str, str]]:
    """Up to n function (prompt, answer) pairs from `files` (held-out ones), in file-hash then source order;
    a pair whose text repeats an earlier one is kept once."""
    out, seen = [], set()
    for f in files:
        for ex in function_examples(f.read(), max_chars):
            if ex not in seen:
                seen.add(ex)
                out.append(ex)
                if len(out) >= n:
                    return out
    return out


# ----------------------------------------------------------------------------- prose

_COMMENT = re.compile(r"^[ \t]*#(?!!)[ \t]?(.*)$")
_PROSE_MIN_CHARS = 40  # a string constant shorter than this is a label or message, not prose
_LETTERS = re.compile(r"[A-Za-z ,.;:'()\-\n]")


def _reads_as_prose(text: str) -> bool:
    """Mostly letters, spaces and punctuation, several words: not a table, a regex or a code template."""
    if len(text) < _PROSE_MIN_CHARS or len(text.split()) < 6:
        return False
    return len(_LETTERS.findall(text)) >= 0.85 * len(text)


def _encodable(text: str) -> bool:
    """False for strings with lone surrogates ("\\udc80" escapes in test modules): they are not text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_docstring(text: str) -> str:
    """Dedented (inspect.cleandoc), doctest blocks (a `>>>` line up to the next blank line) removed,
    blank-line runs collapsed."""
    lines, keep, in_doctest = inspect.cleandoc(text.expandtabs()).strip("\n").splitlines(), [], False
    for ln in lines:
        stripped = ln.strip()
        if stripped.startswith(">>>"):
            in_doctest = True
        if in_doctest:
            if not stripped:
                in_doctest = False
            continue
        keep.append(ln.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip()


def prose_paragraphs(text: str) -> list[str]:
    """English of one module's source, in source order: prose-like string constants (docstrings first among
    them) and runs of full-line comments (code-looking comment runs are dropped by _reads_as_prose)."""
    found: list[tuple[int, str]] = []
    tree = _parse(text)
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) >= _PROSE_MIN_CHARS:
                cleaned = _clean_docstring(node.value)
                if _reads_as_prose(cleaned) and _encodable(cleaned):
                    found.append((node.lineno, cleaned))
    run: list[str] = []
    run_start = 0
    for i, line in enumerate([*text.splitlines(), ""], 1):  # the sentinel closes a final run
        m = _COMMENT.match(line)
        if m and not line.lstrip().startswith("# -*-"):
            if not run:
                run_start = i
            run.append(m.group(1).rstrip())
            continue
        if run:
            para = " ".join(w for w in run if w).strip()
            if _reads_as_prose(para):
                found.append((run_start, para))
            run = []
    return [t for _, t in sorted(found, key=lambda p: p[0])]


class ProseExtractor:
    """Turns module sources into prose documents, keeping each paragraph once across all calls (licence
    headers and boilerplate comments repeat across the stdlib). One extractor per stream."""

    def __init__(self):
        self._seen: set[str] = set()

    def __call__(self, text: str) -> str:
        return self.keep(prose_paragraphs(text))

    def keep(self, paragraphs: list[str]) -> str:
        """The paragraphs not seen before, as one document."""
        paras = []
        for p in paragraphs:
            digest = hashlib.blake2b(p.encode(), digest_size=12).digest()
            if digest not in self._seen:
                self._seen.add(digest)
                paras.append(p)
        return "\n\n".join(paras)


PARALLEL_MIN_CHARS = 1_000_000  # prose caps below this are read in-process (a test's tiny cap reads a few files)


def _file_paragraphs(path: str) -> list[str]:
    return prose_paragraphs(Path(path).read_bytes().decode("utf-8", errors="replace").replace("\x00", ""))


def read_prose_until(files: list[SourceFile], n_chars: int, extractor: ProseExtractor, workers: int = 0) -> list[str]:
    """read_until(files, n_chars, extractor), the same documents in the same order, with the parsing spread
    over `workers` processes (0: one per CPU, at most 16; in-process below PARALLEL_MIN_CHARS or on fewer than
    3 CPUs). Workers are spawned, not forked: the caller may be a GPU actor with CUDA and threads running."""
    if workers == 0:
        cpus = os.cpu_count() or 1
        workers = min(cpus, 16) if cpus >= 3 and n_chars >= PARALLEL_MIN_CHARS else 1
    if workers < 2:
        return read_until(files, n_chars, extractor)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    docs, total, batch = [], 0, 8 * workers
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for i in range(0, len(files), batch):
            for paragraphs in pool.map(_file_paragraphs, [str(f.path) for f in files[i : i + batch]], chunksize=2):
                if total >= n_chars:  # what read_until never reads is not marked as seen either
                    break
                text = extractor.keep(paragraphs)
                if text:
                    docs.append(text[: n_chars - total])
                    total += len(docs[-1])
            if total >= n_chars:
                break
    return docs
