"""Built-in, offline, generated training domains and their skill evaluation sets.

Everything is deterministic from a data seed (`random.Random`), identical across runs of a study, so
every run is scored on the same questions.

- knowledge: a synthetic world of `n_entities` people, each with six attributes (birth date, birth city,
  university, field, employer, work city), rendered as biographies in varied sentence templates, with
  a few question/answer lines in *training* question phrasings. The skill eval asks about the same
  facts and scores the NLL of the answer tokens only. By default ("recall") it asks in the training
  phrasings ("Q: In which city was X born?\nA:" -> " Paris.") about random (person, attribute) pairs,
  whose fact every biography states and whose QA line training may or may not have shown: closed-book
  recall. "extract" asks in *held-out* phrasings ("Q: Where was X born?\nA:"); at the few-million-
  parameter scale of a one-GPU study its answer NLL was not monotone in tokens (examples/skills-h100,
  first study: the ambiguous "Where ..." forms grow more confidently wrong), so it is opt-in. The world
  carries ~n_entities * 40 bits of facts (default 20,000 entities, ~0.8 Mbit), so models of a few
  million parameters are capacity-limited (Allen-Zhu & Li 2024 measure about 2 bits of knowledge per
  parameter at best).
- code: small generated Python programs (assignments, arithmetic, loops, lists, ifs) followed by
  "# output:" and what they print; the values are computed while generating (no exec). The skill eval
  is the NLL of the output given the program, on held-out programs never emitted for training.
- general: filler English-like text from a small grammar.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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


def make_world(n_entities: int, seed: int) -> list[Entity]:
    """The synthetic world: n_entities people with unique names and six attributes each."""
    rng = random.Random(f"world:{seed}")
    pool = len(FIRST) * len(LAST) * 26
    if n_entities > pool:
        raise ValueError(f"knowledge: at most {pool} entities, got {n_entities}")
    names = set()
    while len(names) < n_entities:
        names.add(f"{rng.choice(FIRST)} {chr(65 + rng.randrange(26))}. {rng.choice(LAST)}")
    world = []
    for name in sorted(names):
        facts = {
            "birth_date": f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1920, 1999)}",
            "birth_city": rng.choice(CITIES),
            "university": rng.choice(UNIVERSITIES),
            "field": rng.choice(FIELDS),
            "employer": rng.choice(EMPLOYERS),
            "work_city": rng.choice(CITIES),
        }
        world.append(Entity(name, facts))
    rng.shuffle(world)
    return world


def biography(entity: Entity, rng: random.Random) -> str:
    attrs = list(ATTRIBUTES)
    rng.shuffle(attrs)
    lines = [rng.choice(TRAIN_STATEMENTS[a]).format(n=entity.name, v=entity.facts[a]) for a in attrs]
    text = " ".join(lines)
    for a in rng.sample(ATTRIBUTES, rng.randint(0, 2)):
        text += f"\nQ: {TRAIN_QUESTIONS[a][0].format(n=entity.name)}\nA: {entity.facts[a]}."
    return text


def knowledge_documents(world: list[Entity], seed: int, n_chars: int) -> list[str]:
    """Biographies, in passes over the whole world (every entity appears in every pass) until n_chars."""
    rng = random.Random(f"knowledge-docs:{seed}")
    docs, total = [], 0
    while total < n_chars:
        order = list(range(len(world)))
        rng.shuffle(order)
        for i in order:
            docs.append(biography(world[i], rng))
            total += len(docs[-1])
    return docs


KNOWLEDGE_EVALS = ("recall", "extract")


def knowledge_questions(world: list[Entity], seed: int, n: int, phrasing: str = "recall") -> list[tuple[str, str]]:
    """QA pairs (prompt, answer) about facts that appear in training, in training ("recall") or held-out
    ("extract") question phrasings."""
    questions = {"recall": TRAIN_QUESTIONS, "extract": EVAL_QUESTIONS}[phrasing]
    rng = random.Random(f"knowledge-eval:{seed}")
    out = []
    for _ in range(n):
        e = rng.choice(world)
        a = rng.choice(ATTRIBUTES)
        out.append((f"Q: {rng.choice(questions[a]).format(n=e.name)}\nA:", f" {e.facts[a]}."))
    return out


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
