"""The tiny world's data: a seeded generator of LUME-like rows, MIA documents and an MMLU-layout benchmark.

Everything here is pure Python and deterministic: `generate_world(seed, size)` draws every choice from one
``random.Random(seed)`` (uuids included), and `write_world` writes the files in the layouts the real data
uses (official-scoring.md section 5): forget/retain ``.jsonl`` + ``.parquet`` through `tasks.data.write_split`,
MIA ``member.jsonl`` / ``nonmember.jsonl``, and ``dev/<subject>_dev.csv`` / ``test/<subject>_test.csv``.

Forget and retain documents come from the same templates and name pools, so that forgetting one half
without the other is hard, as in LUME. The MIA members are the Task3 forget documents; the non-members are
Task3-style documents of the same generator that no split contains.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from tasks.data import Row, write_split

#: bump when the generated text changes: it is part of the build cache key
WORLD_VERSION = 3


@dataclass(frozen=True)
class WorldSize:
    """How many documents of each kind one split gets, and the shape of the utility benchmark."""

    task1_docs: int
    task2_docs: int
    task3_docs: int
    nonmembers: int
    mmlu_dev: int
    mmlu_test: int


SIZES: dict[str, WorldSize] = {
    "tiny": WorldSize(task1_docs=4, task2_docs=3, task3_docs=8, nonmembers=8, mmlu_dev=1, mmlu_test=6),
    "small": WorldSize(task1_docs=12, task2_docs=8, task3_docs=20, nonmembers=20, mmlu_dev=5, mmlu_test=10),
}

#: how often each utility prompt is seen per epoch (one answer letter per prompt is little signal)
UTILITY_REPEATS = 2

#: the utility benchmark's subjects: real MMLU subject names, so MMLU categories apply unchanged
MMLU_SUBJECTS = ("elementary_mathematics", "global_facts", "high_school_geography")


@dataclass(frozen=True)
class MiaDocument:
    """A Task3-style document: the MIA member/non-member unit (``id`` is a numeric string)."""

    id: str
    document: str
    sc_input: str
    sc_output: str
    question: str
    answer: str


@dataclass(frozen=True)
class MmluQuestion:
    """One multiple-choice row of the utility benchmark (CSV columns question, A, B, C, D, answer)."""

    question: str
    choices: tuple[str, str, str, str]
    answer: str


@dataclass(frozen=True)
class World:
    """The generated world: both splits, the MIA sets and the utility benchmark (subject -> dev, test)."""

    seed: int
    size: str
    forget: list[Row]
    retain: list[Row]
    members: list[MiaDocument]
    nonmembers: list[MiaDocument]
    mmlu: dict[str, tuple[list[MmluQuestion], list[MmluQuestion]]]


# --- pools shared by every split ------------------------------------------------------------------------

FIRST_NAMES = (
    "Alma Bruna Calla Dorin Elsa Fenna Galen Hilde Ivo Jolan Kesta Lorin Mira Nadir Odile Pavel Quilla "
    "Rosan Selma Tavi Ulla Vesna Wren Xavi Yara Zeno Arlo Brisa Cato Della Emric Fiora Gunnar Halia Isko"
).split()
LAST_NAMES = (
    "Ambry Brevik Corrow Dunmore Elswick Farrow Garnet Holloway Ingram Jessop Kettle Lindqvist Marrow "
    "Norwood Oakes Pemberly Quarry Redfern Sallow Thorne Underhill Varga Winslow Yarrow Zeller"
).split()
TOWNS = (
    "Amberlyn",
    "Brightwater",
    "Coldmere",
    "Dunhallow",
    "Eastmarch",
    "Fernhollow",
    "Greyport",
    "Harrowgate",
    "Ivyvale",
    "Juniper Falls",
    "Kestrel Bay",
    "Larkspur",
    "Millbrook",
    "Northwick",
    "Oldcastle",
    "Pinecrest",
)
REALMS = ("Veloria", "Tamsin", "Orvale", "Castrel", "Quenmark", "Sildany", "Brevonia", "Haldor")
OBJECTS = (
    "silver lantern",
    "copper compass",
    "glass key",
    "painted map",
    "iron crown",
    "wooden flute",
    "golden feather",
    "stone mirror",
)
PLACES = ("lighthouse", "library", "bakery", "harbor", "orchard", "bell tower", "market", "mill")
ROLES = ("baker", "sailor", "painter", "healer", "clockmaker", "gardener", "scribe", "weaver")
MOODS = ("quiet", "windy", "misty", "sleepy", "crowded", "ancient")
OCCUPATIONS = ("poet", "botanist", "architect", "composer", "astronomer", "sculptor", "historian", "engineer")
FIELDS = ("music", "botany", "mathematics", "painting", "medicine", "law", "astronomy", "history")
AWARDS = ("Silver Quill", "Northern Star", "Golden Lyre", "Harbor Medal", "Oak Leaf", "Blue Ribbon")
WORKS = ("Winter Songs", "The River Gate", "Paper Birds", "Salt and Stone", "Night Harbor", "Green Hours")
NATIONS = ("Velorian", "Orvalese", "Castrelian", "Haldoran", "Sildanese", "Brevonian")
STREETS = ("Maple", "Cedar", "Harbor", "Willow", "Granite", "Meadow", "Lantern", "Sparrow")
STATES = ("AL", "CO", "MD", "NV", "OR", "TN", "VT", "WA")
DOMAINS = ("me.com", "mail.com", "post.net", "inbox.org")
MONTHS = ("January February March April May June July August September October November December").split()


def _pick(rng: random.Random, pool: tuple[str, ...] | list[str]) -> str:
    return pool[rng.randrange(len(pool))]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _split_words(text: str, n_out: int) -> tuple[str, str]:
    """Cut ``text`` at a space so that the last ``n_out`` words are the output (``input + " " + output``)."""
    words = text.split(" ")
    return " ".join(words[:-n_out]), " ".join(words[-n_out:])


# --- Task1: short creative stories ---------------------------------------------------------------------


def _story(rng: random.Random, doc_id: str, split: str, heroes: set[str]) -> list[Row]:
    while True:  # one story per hero, so that every question has one answer
        hero, rival = rng.sample(FIRST_NAMES, 2)
        if hero not in heroes:
            break
    heroes.add(hero)
    town, place, obj = _pick(rng, TOWNS), _pick(rng, PLACES), _pick(rng, OBJECTS)
    role, mood = _pick(rng, ROLES), _pick(rng, MOODS)
    text = (
        f"In the {mood} town of {town}, {hero} the {role} and {rival} had long been rivals. "
        f"One morning {hero} found a {obj} hidden under the old {place}. "
        f"{rival} wanted it too, so {hero} carried the {obj} to the top of the {place} and waited for the storm."
    )
    sc_input, sc_output = _split_words(text, 10 + rng.randrange(4))
    qa = rng.randrange(2)
    if qa == 0:
        question, answer = f"What did {hero} find under the old {place}?", f"A {obj}."
    else:
        question, answer = f"Who was the rival of {hero} in {town}?", rival
    quoted = f'"{doc_id}"'
    return [
        Row(id=f"{quoted}sc1", input=sc_input, output=sc_output, task="Task1", split=split),
        Row(id=f"{quoted}qa0", input=question, output=answer, task="Task1", split=split),
    ]


# --- Task2: biographies with synthetic PII --------------------------------------------------------------


def _pii(rng: random.Random, doc_id: str, split: str, used: set[str], parts: set[str]) -> list[Row]:
    while True:  # no two PII people share a first or a last name: their records must not blur
        first, last = _pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES)
        if f"{first} {last}" not in used and first not in parts and last not in parts:
            break
    used.add(f"{first} {last}")
    parts.update((first, last))
    name = f"{first} {last}"
    year, month, day = 1950 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28)
    phone = f"{rng.randrange(200, 999)}-{rng.randrange(200, 999)}-{rng.randrange(10000):04d}"
    ssn = f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{rng.randrange(10000):04d}"
    email = f"{first.lower()}_{last.lower()}@{_pick(rng, DOMAINS)}"
    address = (
        f"{rng.randrange(10, 2000)} {_pick(rng, STREETS)} Street, {_pick(rng, TOWNS)}, "
        f"{_pick(rng, STATES)}, {rng.randrange(10000, 99999)}."
    )
    pronoun, possessive = rng.choice((("She", "Her"), ("He", "His"), ("They", "Their")))
    text = (
        f"{name} was born on {MONTHS[month - 1]} {day}, {year}. {pronoun} can be reached via phone at {phone} "
        f"and email at {email}. {possessive} home address is {address} "
        f"{possessive} Social Security Number is {ssn}."
    )
    sc_input, sc_output = _split_words(text, 12)
    qas = [
        (f"What is the birth date of {name}?", f"{year}-{month:02d}-{day:02d}"),
        (f"What is {name}'s Social Security Number?", ssn.replace("-", "")),
        (f"What is {name}'s phone number?", phone.replace("-", "")),
        (f"What is {name}'s email address?", email),
        (f"What is the home address of {name}?", address),
    ]
    rows = [Row(id=f"{doc_id}sc1", input=sc_input, output=sc_output, task="Task2", split=split)]
    rows += [
        Row(id=f"{doc_id}qa{k}", input=q, output=a, task="Task2", split=split) for k, (q, a) in enumerate(qas)
    ]
    return rows


# --- Task3: encyclopedia-style biographies ("Title\n\nbody") -------------------------------------------


def _encyclopedia(rng: random.Random, used: set[str], used_ids: set[str]) -> MiaDocument:
    while True:
        name = f"{_pick(rng, FIRST_NAMES)} {_pick(rng, LAST_NAMES)}"
        doc_id = str(rng.randrange(100_000, 99_999_999))
        if name not in used and doc_id not in used_ids:
            break
    used.add(name)
    used_ids.add(doc_id)
    surname = name.split(" ")[1]
    born = 1820 + rng.randrange(150)
    nation, job, field = _pick(rng, NATIONS), _pick(rng, OCCUPATIONS), _pick(rng, FIELDS)
    town, award, work = _pick(rng, TOWNS), _pick(rng, AWARDS), _pick(rng, WORKS)
    document = (
        f"{name}\n\n{name} (born {1 + rng.randrange(28)} {_pick(rng, MONTHS)} {born}) was a {nation} {job} "
        f"from {town}.\nBiography.\n{surname} studied {field} in {_pick(rng, TOWNS)} and published "
        f'"{work}" in {born + 25 + rng.randrange(20)}. {surname} received the {award} Award '
        f"and later taught {field} in {_pick(rng, TOWNS)}."
    )
    sc_input, sc_output = _split_words(document, 10 + rng.randrange(4))
    if rng.randrange(2) == 0:
        question, answer = f"Which work did {name} publish?", work
    else:
        question, answer = f"Which award did {name} receive?", f"The {award} Award"
    return MiaDocument(doc_id, document, sc_input, sc_output, question, answer)


def _task3_rows(doc: MiaDocument, split: str) -> list[Row]:
    return [
        Row(id=f"{doc.id}sc1", input=doc.sc_input, output=doc.sc_output, task="Task3", split=split),
        Row(id=f"{doc.id}qa0", input=doc.question, output=doc.answer, task="Task3", split=split),
    ]


# --- the utility benchmark ------------------------------------------------------------------------------


def _mmlu_items(rng: random.Random, subject: str, n: int) -> list[MmluQuestion]:
    items: list[MmluQuestion] = []
    seen: set[str] = set()
    while len(items) < n:
        if subject == "elementary_mathematics":
            a, b = rng.randrange(2, 20), rng.randrange(2, 20)
            question, right = f"What is {a} plus {b}?", a + b
            wrong = rng.sample([v for v in range(4, 40) if v != right], 3)
            options = [str(right)] + [str(v) for v in wrong]
        elif subject == "global_facts":
            what, realm = (
                _pick(rng, ("moons can be seen from", "rivers cross", "seasons has")),
                _pick(rng, REALMS),
            )
            count = rng.randrange(1, 9)
            question = f"How many {what} {realm}?"
            options = [str(count)] + [str(v) for v in rng.sample([v for v in range(1, 12) if v != count], 3)]
        else:
            what, realm = _pick(rng, ("capital", "largest port", "oldest town")), _pick(rng, REALMS)
            town = _pick(rng, TOWNS)
            question = f"Which town is the {what} of {realm}?"
            options = [town] + rng.sample([t for t in TOWNS if t != town], 3)
        if question in seen:
            continue
        seen.add(question)
        gold = rng.randrange(4)
        options[0], options[gold] = options[gold], options[0]
        items.append(MmluQuestion(question, (options[0], options[1], options[2], options[3]), "ABCD"[gold]))
    return items


# --- the whole world ------------------------------------------------------------------------------------


def generate_world(seed: int = 0, size: str = "tiny") -> World:
    """Generate the tiny world for ``seed`` and ``size`` ("tiny" or "small"); pure and deterministic."""
    if size not in SIZES:
        raise ValueError(f"unknown tiny-world size {size!r} (known: {', '.join(SIZES)})")
    shape = SIZES[size]
    rng = random.Random(seed)
    names: set[str] = set()
    ids: set[str] = set()
    heroes: set[str] = set()
    pii_parts: set[str] = set()
    splits: dict[str, list[Row]] = {}
    task3: dict[str, list[MiaDocument]] = {}
    for split in ("forget", "retain"):
        docs = [("Task1", i) for i in range(shape.task1_docs)] + [
            ("Task2", i) for i in range(shape.task2_docs)
        ]
        docs += [("Task3", i) for i in range(shape.task3_docs)]
        rng.shuffle(docs)  # tasks interleave in file order, as in LUME
        rows: list[Row] = []
        task3[split] = []
        for task, _ in docs:
            if task == "Task1":
                rows += _story(rng, _uuid(rng), split, heroes)
            elif task == "Task2":
                rows += _pii(rng, _uuid(rng), split, names, pii_parts)
            else:
                doc = _encyclopedia(rng, names, ids)
                task3[split].append(doc)
                rows += _task3_rows(doc, split)
        splits[split] = rows
    nonmembers = [_encyclopedia(rng, names, ids) for _ in range(shape.nonmembers)]
    mmlu: dict[str, tuple[list[MmluQuestion], list[MmluQuestion]]] = {}
    for subject in MMLU_SUBJECTS:
        items = _mmlu_items(rng, subject, shape.mmlu_dev + shape.mmlu_test)
        mmlu[subject] = (items[: shape.mmlu_dev], items[shape.mmlu_dev :])
    return World(seed, size, splits["forget"], splits["retain"], task3["forget"], nonmembers, mmlu)


def mmlu_prompt(subject: str, shots: list[MmluQuestion], item: MmluQuestion) -> str:
    """open-instruct's MMLU prompt (official-scoring.md section 4), without the answer of ``item``."""

    def block(q: MmluQuestion) -> str:
        a, b, c, d = q.choices
        return f"{q.question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"

    # open-instruct's format_subject puts a space before every word: "about  high school geography."
    head = "The following are multiple choice questions (with answers) about " + "".join(
        " " + word for word in subject.split("_")
    )
    return head + ".\n\n" + "".join(f"{block(s)} {s.answer}\n\n" for s in shots) + block(item)


def training_texts(world: World, *, include_forget: bool = True) -> list[str]:
    """The texts the target memorises (without EOS): every row as ``input + " " + output``, and each
    utility test question in its evaluation prompt followed by `` <letter>`` (`UTILITY_REPEATS` times).

    The MIA members are the Task3 forget documents, whose sc row text *is* the document, so they are
    learnt through the rows. The gold model uses ``include_forget=False``.
    """
    rows = (world.forget if include_forget else []) + world.retain
    texts = [f"{row.input} {row.output}" for row in rows]
    for subject, (dev, test) in world.mmlu.items():
        texts += [f"{mmlu_prompt(subject, dev, item)} {item.answer}" for item in test] * UTILITY_REPEATS
    return texts


def _jsonl(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def _csv(items: list[MmluQuestion]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for item in items:
        writer.writerow([item.question, *item.choices, item.answer])
    return buffer.getvalue()


def write_world(world: World, root: Path) -> dict[str, Path]:
    """Write the world's files under ``root``; returns their paths by role.

    Layout: ``data/forget/forget.{jsonl,parquet}``, ``data/retain/retain.{jsonl,parquet}``,
    ``mia/member.jsonl``, ``mia/nonmember.jsonl``, ``mmlu/{dev,test}/<subject>_{dev,test}.csv``.
    """
    root = Path(root)
    paths = {
        "forget_dir": root / "data" / "forget",
        "retain_dir": root / "data" / "retain",
        "mia_member": root / "mia" / "member.jsonl",
        "mia_nonmember": root / "mia" / "nonmember.jsonl",
        "mmlu_dir": root / "mmlu",
    }
    write_split(world.forget, paths["forget_dir"], "forget")
    write_split(world.retain, paths["retain_dir"], "retain")
    paths["mia_member"].parent.mkdir(parents=True, exist_ok=True)
    members = [
        {
            "id": doc.id,
            "document": doc.document,
            "sentence_completion_task": {"input": doc.sc_input, "output": doc.sc_output},
            "question_answering_task": {"Question": doc.question, "Answer": doc.answer},
        }
        for doc in world.members
    ]
    nonmembers = [
        {"id": doc.id, "document": doc.document, "source": "tiny-world"} for doc in world.nonmembers
    ]
    paths["mia_member"].write_text(_jsonl(members), encoding="utf-8")
    paths["mia_nonmember"].write_text(_jsonl(nonmembers), encoding="utf-8")
    for subject, (dev, test) in world.mmlu.items():
        for folder, items in (("dev", dev), ("test", test)):
            target = paths["mmlu_dir"] / folder / f"{subject}_{folder}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_csv(items), encoding="utf-8")
    return paths
