"""Calibration sequences sampled with the model's own tokenizer (the calibration stage,
pipeline.stages.calibration, writes them; read_calibration reads them back).

Sources, each as its reference draws it (Python's random seeded with `seed`):
  c4        allenai/c4 en/c4-train.00000-of-01024.json.gz: for each sample, a random document
            longer than `length` tokens, then a random window of `length` tokens in it (Wanda,
            SparseGPT, OWL).
  wikitext2 wikitext-2-raw-v1 train, joined with spaces into one token stream; random windows.
  pg19      deepmind/pg19 validation books cut into paragraph-packed chunks of at most 1024
            characters; `samples` chunks drawn with random.sample, each tokenised and truncated
            to `length` tokens (ShortGPT in paper A; sequences can be shorter than `length`).
  file      a local text: documents separated by blank lines, drawn as for c4; when no document
            is longer than the window, the documents are joined into one stream as for wikitext2.
"""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.core.artifacts import read_table

C4 = ("allenai/c4", {"train": "en/c4-train.00000-of-01024.json.gz"})
PG19 = "deepmind/pg19"
WIKITEXT2 = ("Salesforce/wikitext", "wikitext-2-raw-v1")
PG19_CHUNK_CHARS = 1024
# draws of a random document before concluding that (almost) none is long enough
MAX_DRAWS = 100_000


def _hub(load, what: str):
    """Run a Hub loader; turn its failures into a message that says what to do."""
    try:
        return load()
    except Exception as error:  # noqa: BLE001 - network, auth and cache failures come in many types
        raise RuntimeError(
            f"cannot load {what} from the Hugging Face Hub ({type(error).__name__}: {error}). Fix: check the "
            "network; log in (hf auth login) or set HF_TOKEN if it is gated; with HF_HUB_OFFLINE=1 "
            "download it first on a machine with network access; or use calibration source: file with "
            "path: a local text file"
        ) from error


class _Column:
    def __init__(self, data, name):
        self.data, self.name = data, name

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i][self.name]


def window(ids: list[int], length: int, rng: random.Random) -> list[int]:
    start = rng.randint(0, len(ids) - length - 1)
    return ids[start : start + length]


def from_documents(texts, tokenize, samples: int, length: int, rng: random.Random) -> list[list[int]]:
    """For each sample: a random document with more than `length` tokens, a random window."""
    out = []
    for _ in range(samples):
        for _ in range(MAX_DRAWS):
            ids = tokenize(texts[rng.randint(0, len(texts) - 1)])
            if len(ids) > length:
                break
        else:
            raise ValueError(f"found no document longer than {length} tokens in {MAX_DRAWS} draws; lower calibration length")
        out.append(window(ids, length, rng))
    return out


def from_stream(ids: list[int], samples: int, length: int, rng: random.Random, what: str) -> list[list[int]]:
    """Random windows of one token stream."""
    if len(ids) <= length:
        raise ValueError(f"{what} holds {len(ids)} tokens; a window of calibration length {length} needs more: "
                         "give more text or lower length")
    return [window(ids, length, rng) for _ in range(samples)]


def pg19_chunks(books: list[str], chars: int = PG19_CHUNK_CHARS) -> list[str]:
    """Consecutive paragraphs of each book packed into chunks of at most `chars` characters
    (a paragraph longer than that is cut)."""
    chunks = []
    for book in books:
        current = ""
        for para in (p.strip() for p in book.split("\n\n")):
            if not para:
                continue
            while len(para) > chars:
                if current:
                    chunks.append(current)
                    current = ""
                chunks.append(para[:chars])
                para = para[chars:]
            if current and len(current) + 2 + len(para) > chars:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{para}" if current else para
        if current:
            chunks.append(current)
    return chunks


def read_documents(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} does not exist; give a local text file as calibration path")
    text = path.read_text(encoding="utf-8", errors="replace")
    docs = [d.strip() for d in text.replace("\r\n", "\n").split("\n\n")]
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"calibration file {path} holds no text")
    return docs


def sample(calibration: dict, tokenizer) -> list[list[int]]:
    source, n, length = calibration["source"], calibration["samples"], calibration["length"]
    rng = random.Random(calibration["seed"])

    def tokenize(text: str) -> list[int]:
        return tokenizer(text)["input_ids"]

    if source == "c4":
        from datasets import load_dataset

        data = _hub(lambda: load_dataset(C4[0], data_files=C4[1], split="train"), f"data set {C4[0]}")
        texts = _Column(data, "text")  # 356k documents: read only the ones drawn
        return from_documents(texts, tokenize, n, length, rng)
    if source == "wikitext2":
        from datasets import load_dataset

        data = _hub(lambda: load_dataset(*WIKITEXT2, split="train"), f"data set {WIKITEXT2[0]}")
        return from_stream(tokenize(" ".join(data["text"])), n, length, rng, "wikitext-2 train")
    if source == "pg19":
        from datasets import load_dataset

        data = _hub(lambda: load_dataset(PG19, split="validation"), f"data set {PG19}")
        chunks = pg19_chunks(data["text"])
        if len(chunks) < n:
            raise ValueError(f"pg19 validation gives {len(chunks)} chunks; fewer than samples {n}")
        return [tokenizer(c, truncation=True, max_length=length)["input_ids"] for c in rng.sample(chunks, n)]
    if source == "demo_task":
        from pipeline.data import demo_task

        # about 60 tokens a worked problem: enough text for every window
        text = demo_task.calibration_text(calibration.get("task", {}), n * max(4, length // 20), calibration["seed"])
        return from_stream(tokenize(text), n, length, rng, "demo_task calibration text")
    if source == "file":
        docs = read_documents(calibration["path"])
        if any(len(tokenize(d)) > length for d in docs):
            return from_documents(docs, tokenize, n, length, rng)
        return from_stream(tokenize("\n\n".join(docs)), n, length, rng, f"calibration file {calibration['path']}")
    raise ValueError(f"unknown calibration source {source!r}; choose c4, pg19, wikitext2, file or demo_task")


def read_calibration(path) -> list[list[int]]:
    """The token ids of a calibration artifact, one list per sequence."""
    return [list(map(int, ids)) for ids in read_table(path)["input_ids"]]
