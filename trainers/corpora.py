"""Built-in, offline, generated training domains and their skill evaluation sets.

Everything is deterministic from a data seed, identical across runs of a study, so every run is scored on
the same questions. The default code and general domains are real text (trainers/python_sources.py); the
generated ones here are the knowledge world and, opt-in, generated programs and filler prose.

knowledge: a synthetic world of `n_entities` people, each with six attributes drawn uniformly and
independently (birth date, birth city, university, field, employer, work city; ~43 bits per person),
rendered as biographies in varied sentence templates (every biography states all six, in a random order),
with a few question/answer lines in *training* question phrasings.

Popularity is heavy-tailed. Allen-Zhu & Li's bioS (arXiv:2404.05405) draws attributes uniformly and
controls the number of exposures per person, which is the right design for measuring bits per parameter
at a fixed exposure count; in a scaling study it makes recall a memorisation threshold (every person
seen about equally often: below the threshold nothing is known, above it everything, so the loss follows no
power law: BENCHMARKS.md, GPU study: skills-h100). Here the biography stream draws person r (rank r = 0, 1,
... in the world's order) with probability p_r proportional to (r + 1 + offset)^-exponent (Zipf-
Mandelbrot), as mentions of real entities are (Kandpal et al. 2023, arXiv:2211.08411: QA accuracy of LLMs
grows with the number of pretraining documents about an entity). A run of B biographies exposes person r
~B p_r times, so the set of people seen often enough to be learned grows smoothly with D, and with N
(larger models learn from fewer exposures and store more); under Zipf features with exponent 1 + a the
expected error falls as a power law, ~n^(-a/(1+a)) in the number of samples n (Hutter 2021,
arXiv:2102.04074). Defaults (exponent 1.2, offset 20, 300,000 people, a 64M-token stream) were sized by
a threshold model of recall so that a one-GPU study (N 0.5M-30M parameters, D 1e7-1e9 byte tokens) neither
learns the whole distribution nor nothing: the most popular person is ~1% of the stream, a 64M-token
stream mentions ~15,000 distinct people, and the share of mentions belonging to people seen fewer than
~30 times spans ~0.9 (D = 1e7, knowledge 30% of the mix) to ~0.3 (D = 1e9). The attributes are
independent of popularity.

The skill eval ("recall", default) asks about facts in the training phrasings ("Q: In which city was X
born?\nA:" -> " Paris.") and scores the NLL of the answer tokens only. Its questions sample the
popularity *of the training stream*: draw i picks the person at quantile (i + 1/2)/n of the stream's
mention counts (systematic sampling: stratified by popularity with one draw per stratum, self-weighting),
attributes in shuffled blocks of six; identical questions are merged into one row with a weight (their
count), so the popular head costs one row per question, not thousands. Every asked fact appears in
training. With n draws the eval's own sampling error is at most std(per-draw NLL) / sqrt(n) (the i.i.d.
bound; systematic sampling is no worse), which trainers/evaluate.py reports per skill; the default 2^18
draws keep it below 0.3% of the loss for a per-draw coefficient of variation up to 1.5, the threshold
model's worst case over the study's range. "extract" asks in *held-out* phrasings ("Q: Where was X
born?\nA:"); at the few-million-parameter scale its answer NLL is not monotone in tokens, so it is
opt-in.

code (generated, opt-in): small Python programs (assignments, arithmetic, loops, lists, ifs) followed by
"# output:" and what they print; the values are computed while generating (no exec). Its skill eval is
the NLL of the output given the program, on held-out programs never emitted for training.

general (generated, opt-in): filler English-like text from a small grammar. It carries no scaling
signal (its held-out loss is the same at every N and D), so no default mix uses it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- knowledge

FIRST = (
    "Ada Alan Alice Amir Ana Anton Aria Ben Bruno Carla Chen Clara Dana Daniel Dario Elena Emil Emma "
    "Eva Felix Fiona Frank Gita Greta Hana Hugo Ida Igor Ines Ivan Jana Jonas Julia Kai Karim Lara "
    "Leo Lina Luca Maya Marco Mira Nadia Nico Nina Noah Olga Omar Oscar Paula Pedro Petra Rafael Rosa "
    "Ruth Sam Sara Sofia Tara Teo Uma Vera Victor Wanda Yara Yusuf Zoe Zora Basil Cleo Dora Ezra "
    "Flora Gus Hilda Iris Jude Kira"
).split()
LAST = (
    "Abbott Baker Bianchi Novak Castro Dubois Eriksen Fischer Garcia Horvat Ivanova Jansen Kowalski "
    "Larsen Moreau Nakamura Okafor Petrov Quinn Rossi Schmidt Tanaka Ueda Varga Weber Xu Yilmaz Zimmer "
    "Alves Brandt Costa Duarte Engel Falk Gomez Haas Ito Jovanovic Keller Lindqvist Marin Nilsen Olsen "
    "Pereira Roth Silva Torres Urban Vogel Wolf Young Ziegler Adler Berg Cruz Diaz Ek Frey Grant Holm "
    "Iversen Jung Kovac Lund Meyer Nagy Ortiz Park Reyes Sato Toth Vidal Walsh Yates Zeller Bauer"
).split()
CITIES = (
    "Paris Lisbon Oslo Cairo Lima Quito Dakar Riga Tunis Hanoi Seoul Kyoto Perth Austin Denver Boston "
    "Madrid Prague Vienna Zurich Geneva Milan Naples Porto Cork Leeds Bergen Malmo Turku Gdansk Krakow "
    "Brno Graz Split Sofia Varna Izmir Tbilisi Baku Almaty Tashkent Lahore Dhaka Manila Jakarta Sendai "
    "Osaka Busan Taipei Auckland Hobart Calgary Quebec Havana Bogota Santiago Montevideo Recife Nairobi "
    "Accra Lagos Rabat Windhoek"
).split()
UNIVERSITIES = tuple(f"the University of {c}" for c in CITIES[:24]) + tuple(
    f"{c} Institute of Technology" for c in CITIES[24:40]
)
FIELDS = (
    "physics chemistry biology geology astronomy economics history linguistics philosophy mathematics "
    "statistics medicine law architecture music sociology psychology ecology botany zoology "
    "oceanography genetics robotics cryptography"
).split()
EMPLOYER_STEMS = (
    "Acme Borealis Cobalt Delta Everest Fjord Granite Helix Indigo Juniper Kestrel Lumen Meridian "
    "Nimbus Orion Pioneer Quartz Redwood Summit Tundra Umbra Vertex Willow Zenith"
).split()
EMPLOYERS = tuple(f"{s} {k}" for s in EMPLOYER_STEMS for k in ("Labs", "Systems", "Group"))
MONTHS = ("January February March April May June July August September October November December").split()

ATTRIBUTES = ("birth_date", "birth_city", "university", "field", "employer", "work_city")

# statements used in training biographies; {n} name, {v} value
TRAIN_STATEMENTS = {
    "birth_date": (
        "{n} was born on {v}.",
        "{n} came into the world on {v}.",
        "The birthday of {n} is {v}.",
        "{n}'s date of birth is {v}.",
    ),
    "birth_city": (
        "{n} was born in {v}.",
        "{n}'s birthplace is {v}.",
        "{n} grew up in {v}, the city of birth.",
        "The hometown of {n} is {v}.",
    ),
    "university": (
        "{n} studied at {v}.",
        "{n} graduated from {v}.",
        "{n} earned a degree at {v}.",
        "{n} is an alumnus of {v}.",
    ),
    "field": (
        "{n} works in {v}.",
        "{n} specialises in {v}.",
        "The field of {n} is {v}.",
        "{n} built a career in {v}.",
    ),
    "employer": (
        "{n} is employed by {v}.",
        "{n} works for {v}.",
        "{n} joined {v}.",
        "The employer of {n} is {v}.",
    ),
    "work_city": (
        "{n} works in the city of {v}.",
        "{n} commutes to an office in {v}.",
        "{n}'s workplace is in {v}.",
        "{n} lives and works in {v}.",
    ),
}
# question phrasings seen in training (as "Q: ...\nA: value.") and held out for evaluation
TRAIN_QUESTIONS = {
    "birth_date": ("When was {n} born?",),
    "birth_city": ("In which city was {n} born?",),
    "university": ("Which university did {n} attend?",),
    "field": ("What field does {n} work in?",),
    "employer": ("Which company employs {n}?",),
    "work_city": ("In which city does {n} work?",),
}
EVAL_QUESTIONS = {
    "birth_date": ("What is the date of birth of {n}?", "On what date was {n} born?"),
    "birth_city": ("Where was {n} born?", "What is the birthplace of {n}?"),
    "university": ("Where did {n} study?", "From which university did {n} graduate?"),
    "field": ("What is {n}'s field?", "In what area does {n} specialise?"),
    "employer": ("Who is {n}'s employer?", "For which company does {n} work?"),
    "work_city": ("Where does {n} work?", "What city is {n}'s workplace in?"),
}



@dataclass(frozen=True)
class Entity:
    name: str
    facts: dict  # attribute -> value string


SURNAME_SUFFIXES = ("", "son", "er", "ski", "ini", "berg", "ova", "sen")
KNOWLEDGE_EVALS = ("recall", "extract")


class World:
    """A synthetic world of n people; person r has popularity rank r (0: the most mentioned).

    Names are unique ("First X. Lastsuffix"); attributes are drawn uniformly and independently with a
    numpy PCG64 generator seeded by the data seed. Entities are built lazily (a world of 10^6 people costs
    24 MB of attribute indices, not a million dicts)."""

    def __init__(self, n_entities: int, seed: int):
        pool = len(FIRST) * 26 * len(LAST) * len(SURNAME_SUFFIXES)
        if n_entities > pool:
            raise ValueError(f"knowledge: at most {pool} entities, got {n_entities}")
        rng = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
        self.n, self.seed = n_entities, seed
        self._name_codes = rng.permutation(pool)[:n_entities]
        sizes = (len(MONTHS), 28, 80, len(CITIES), len(UNIVERSITIES), len(FIELDS), len(EMPLOYERS), len(CITIES))
        self._values = np.stack([rng.integers(0, k, size=n_entities) for k in sizes], axis=1)  # (n, 8)
        self._cache: dict[int, Entity] = {}

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self[r] for r in range(self.n))

    def name(self, r: int) -> str:
        code = int(self._name_codes[r])
        code, first = divmod(code, len(FIRST))
        code, initial = divmod(code, 26)
        suffix, last = divmod(code, len(LAST))
        return f"{FIRST[first]} {chr(65 + initial)}. {LAST[last]}{SURNAME_SUFFIXES[suffix]}"

    def __getitem__(self, r: int) -> Entity:
        if r not in self._cache:
            month, day, year, city, uni, fld, emp, wcity = (int(v) for v in self._values[r])
            facts = {
                "birth_date": f"{MONTHS[month]} {day + 1}, {1920 + year}",
                "birth_city": CITIES[city],
                "university": UNIVERSITIES[uni],
                "field": FIELDS[fld],
                "employer": EMPLOYERS[emp],
                "work_city": CITIES[wcity],
            }
            self._cache[r] = Entity(self.name(r), facts)
        return self._cache[r]


def make_world(n_entities: int, seed: int) -> World:
    """The synthetic world: n_entities people with unique names and six attributes each."""
    return World(n_entities, seed)


def popularity(n_entities: int, exponent: float, offset: float) -> np.ndarray:
    """p_r proportional to (r + 1 + offset)^-exponent, r = 0..n-1 (Zipf-Mandelbrot; exponent 0: uniform)."""
    p = (np.arange(n_entities, dtype=np.float64) + 1.0 + offset) ** -exponent
    return p / p.sum()


def biography(entity: Entity, rng: random.Random) -> str:
    attrs = list(ATTRIBUTES)
    rng.shuffle(attrs)
    lines = [rng.choice(TRAIN_STATEMENTS[a]).format(n=entity.name, v=entity.facts[a]) for a in attrs]
    text = " ".join(lines)
    for a in rng.sample(ATTRIBUTES, rng.randint(0, 2)):
        text += f"\nQ: {TRAIN_QUESTIONS[a][0].format(n=entity.name)}\nA: {entity.facts[a]}."
    return text


def knowledge_stream(world: World, seed: int, n_chars: int, weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Biographies of people drawn i.i.d. with probability `weights` until n_chars characters; returns
    (documents, person index of each document). Draws come from numpy (PCG64), text from random.Random."""
    draws = np.random.Generator(np.random.PCG64([seed, 0xB10])).random
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    rng = random.Random(f"knowledge-docs:{seed}")
    docs, ids, total = [], [], 0
    while total < n_chars:
        for r in np.searchsorted(cdf, draws(4096), side="right").tolist():
            docs.append(biography(world[r], rng))
            ids.append(r)
            total += len(docs[-1])
            if total >= n_chars:
                break
    return docs, np.asarray(ids, dtype=np.int64)


def knowledge_questions(
    world: World, mention_counts: np.ndarray, seed: int, n: int, phrasing: str = "recall"
) -> list[tuple[str, str, float]]:
    """(prompt, answer, weight) rows: n draws systematically sampled from the mention counts (draw i takes
    the person at quantile (i + 1/2) / n of the cumulative counts), attributes in shuffled blocks of six,
    in training ("recall") or held-out ("extract") phrasings; identical rows merged, weight = their count."""
    questions = {"recall": TRAIN_QUESTIONS, "extract": EVAL_QUESTIONS}[phrasing]
    rng = random.Random(f"knowledge-eval:{seed}")
    cum = np.cumsum(mention_counts)
    people = np.searchsorted(cum, (np.arange(n) + 0.5) / n * cum[-1], side="right").tolist()
    rows: Counter = Counter()
    block: list[str] = []
    for r in people:
        if not block:
            block = rng.sample(ATTRIBUTES, len(ATTRIBUTES))
        a = block.pop()
        e = world[r]
        rows[(f"Q: {rng.choice(questions[a]).format(n=e.name)}\nA:", f" {e.facts[a]}.")] += 1
    return [(p, a, float(w)) for (p, a), w in rows.items()]


# ----------------------------------------------------------------------------- code

VARS = tuple("abcdefghjkmnpqrstuvwxyz")


def program(rng: random.Random) -> tuple[str, str]:
    """A small straight-line program and what it prints, computed while generating."""
    names = rng.sample(VARS, 4)
    env: dict = {}
    lines: list[str] = []
    out: list[str] = []
    for v in names[:2]:
        env[v] = rng.randint(0, 12)
        lines.append(f"{v} = {env[v]}")
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        ints = [v for v in env if isinstance(env[v], int)]
        a, b = rng.sample(ints, 2) if len(ints) > 1 else (ints[0], ints[0])
        if kind == 0:  # arithmetic
            op = rng.choice("+-*")
            t = rng.choice(names)
            env[t] = {"+": env[a] + env[b], "-": env[a] - env[b], "*": env[a] * env[b]}[op]
            lines.append(f"{t} = {a} {op} {b}")
        elif kind == 1:  # loop accumulation
            n, step = rng.randint(2, 5), rng.randint(1, 3)
            lines += [f"for i in range({n}):", f"    {a} = {a} + i * {step}"]
            env[a] += step * n * (n - 1) // 2
        elif kind == 2:  # list ops
            xs = [env[a], env[b], rng.randint(0, 9)]
            lines.append(f"xs = [{a}, {b}, {xs[2]}]")
            if rng.random() < 0.5:
                c = rng.randint(0, 9)
                lines.append(f"xs.append({c})")
                xs.append(c)
            fn = rng.choice(("len", "sum", "max", "min", "sorted"))
            lines.append(f"print({fn}(xs))")
            out.append(str({"len": len, "sum": sum, "max": max, "min": min, "sorted": sorted}[fn](xs)))
        elif kind == 3:  # branch
            t = rng.choice(names)
            lines += [f"if {a} > {b}:", f"    {t} = {a} - {b}", "else:", f"    {t} = {b} - {a}"]
            env[t] = env[a] - env[b] if env[a] > env[b] else env[b] - env[a]
        else:  # modulo / floor division
            d = rng.randint(2, 7)
            t = rng.choice(names)
            op = rng.choice(("%", "//"))
            env[t] = env[a] % d if op == "%" else env[a] // d
            lines.append(f"{t} = {a} {op} {d}")
    shown = rng.sample(sorted(v for v in env if isinstance(env[v], int)), k=min(2, len(env)))
    for v in shown:
        lines.append(f"print({v})")
        out.append(str(env[v]))
    return "\n".join(lines) + "\n# output:\n", "\n".join(out) + "\n"


def code_eval_programs(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(f"code-eval:{seed}")
    return [program(rng) for _ in range(n)]


def code_documents(seed: int, n_chars: int, exclude: set[str]) -> list[str]:
    """Training programs with their output, skipping any program text in `exclude` (the eval set)."""
    rng = random.Random(f"code-docs:{seed}")
    docs, total = [], 0
    while total < n_chars:
        prompt, answer = program(rng)
        if prompt in exclude:
            continue
        docs.append(prompt + answer)
        total += len(docs[-1])
    return docs


# ----------------------------------------------------------------------------- general

DETS = ("the", "a", "every", "some", "this", "that")
ADJS = "small old bright quiet green heavy gentle busy cold warm distant curious".split()
NOUNS = (
    "river farmer child teacher garden city bird window village engine letter mountain doctor "
    "market song boat"
).split()
VERBS = "sees follows builds finds carries remembers paints watches opens visits".split()
INTRANS = "sleeps waits sings travels rests wanders laughs".split()
PREPS = "near behind under beside across through".split()
ADVS = "slowly quietly often today again carefully".split()


def _np(rng: random.Random) -> str:
    adj = f"{rng.choice(ADJS)} " if rng.random() < 0.5 else ""
    return f"{rng.choice(DETS)} {adj}{rng.choice(NOUNS)}"


def sentence(rng: random.Random) -> str:
    if rng.random() < 0.6:
        s = f"{_np(rng)} {rng.choice(VERBS)} {_np(rng)}"
    else:
        s = f"{_np(rng)} {rng.choice(INTRANS)}"
    if rng.random() < 0.4:
        s += f" {rng.choice(PREPS)} {_np(rng)}"
    if rng.random() < 0.3:
        s += f" {rng.choice(ADVS)}"
    return s[0].upper() + s[1:] + "."


def general_documents(seed: int, n_chars: int) -> list[str]:
    rng = random.Random(f"general-docs:{seed}")
    docs, total = [], 0
    while total < n_chars:
        docs.append(" ".join(sentence(rng) for _ in range(rng.randint(3, 8))))
        total += len(docs[-1])
    return docs
