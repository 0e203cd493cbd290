"""Benchmarks: definitions, loading into one normalised table, and prompts.

The benchmark_data stage (pipeline.stages.benchmark_data) writes the table. A definition reads
from the Hugging Face Hub (hub, config_name, split, revision) or from a local JSONL, CSV or
Parquet `file`, with `columns` mapping our columns to the source's:

    id, problem, answer   one source column each (id is optional: the row position is used)
    choices               one column holding a list, or several columns: "Correct Answer,Wrong 1,..."
    correct               instead of answer: the correct choice as a letter (A-J) or 0-based index

The normalised table has one row per problem: id (str), problem (str), answer (str, as the
source gives it: AIME "025", AMC "27.0"; graders compare numbers as numbers; for multiple
choice the text of the correct choice), choices (list of str, or None).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd

from pipeline.core.benchmark_defs import BUILTIN, LETTERS, OUR_COLUMNS, resolve_definition  # noqa: F401 - re-exported


class BenchmarkError(RuntimeError):
    """A problem with a benchmark's source, worded for the user: the config key and the fix."""

# --------------------------------------------------------------------------- prompts


def choice_order(n_choices: int, seed: int, problem_id: str) -> list[int]:
    """A permutation of the choices, seeded by (seed, problem id) so that it differs between
    questions and seeds but is the same on every run (never one generator per question, which
    puts every answer at the same letter)."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    order = list(range(n_choices))
    random.Random(int.from_bytes(digest[:8], "little")).shuffle(order)
    return order


def render_question(row: dict, seed: int) -> tuple[str, str, list[int] | None]:
    """The user turn for one problem under one seed, its gold answer, and the choice order.

    Math: the problem text; gold = the answer. Multiple choice (GPQA's format):
    "{Question}\\n\\nA) ..\\nB) ..\\nC) ..\\nD) .." with choices shuffled per (seed, id);
    gold = the letter of the correct choice."""
    choices = row.get("choices")
    if choices is None or len(choices) == 0:
        return row["problem"], str(row["answer"]), None
    choices = list(choices)
    order = choice_order(len(choices), seed, str(row["id"]))
    shown = [choices[i] for i in order]
    lines = "\n".join(f"{LETTERS[k]}) {text}" for k, text in enumerate(shown))
    gold = LETTERS[shown.index(row["answer"])]
    return f"{row['problem']}\n\n{lines}", gold, order


# --------------------------------------------------------------------------- reading sources


def _missing_file(path: str, name: str) -> str:
    key = f"benchmarks.{name}.file"
    return f"{key}: {path} does not exist; fix the path, or remove {key} to load {name} from the Hub"


def _read_file(path: str, name: str) -> pd.DataFrame:
    source = Path(path).expanduser()
    if not source.exists():
        raise BenchmarkError(_missing_file(path, name))
    suffix = source.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        # json, not pandas.read_json: pandas turns "025" into 25
        with open(source) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        return pd.DataFrame.from_records(records)
    if suffix == ".json":
        data = json.loads(source.read_text())
        if isinstance(data, list):
            return pd.DataFrame.from_records(data)
    if suffix == ".csv":
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    if suffix == ".parquet":
        return pd.read_parquet(source)
    raise BenchmarkError(f"benchmarks.{name}.file: {path} is of an unknown kind. Allowed: a .jsonl, .csv or .parquet "
                         "file, or .json holding a list of records. Fix: convert it to one of them")


def _gated_message(repo: str, name: str) -> str:
    return (f"benchmarks.{name}: data set {repo} is gated and this account has no access. Fix: accept its "
            f"terms on https://huggingface.co/datasets/{repo}, then set HF_TOKEN or run `hf auth login`; "
            f"or set benchmarks.{name}.file to a local JSONL, CSV or Parquet copy")


def _read_hub(definition: dict, name: str) -> pd.DataFrame:
    import datasets
    from huggingface_hub import errors as hub_errors

    repo = definition["hub"]
    frames = []
    for config_name in (definition.get("config_name") or "").split(","):
        try:
            data = datasets.load_dataset(repo, config_name.strip() or None, split=definition.get("split"),
                                         revision=definition.get("revision"))
        except hub_errors.GatedRepoError as error:
            raise BenchmarkError(_gated_message(repo, name)) from error
        except datasets.exceptions.DatasetNotFoundError as error:
            if "gated" in str(error).lower():
                raise BenchmarkError(_gated_message(repo, name)) from error
            raise BenchmarkError(f"benchmarks.{name}.hub: {error}. Fix: correct the id, log in "
                                 f"(hf auth login / HF_TOKEN), or set benchmarks.{name}.file") from error
        except (ValueError, ConnectionError, OSError) as error:
            raise BenchmarkError(f"benchmarks.{name}: cannot load {repo} ({type(error).__name__}: {error}). Fix: "
                                 f"check hub, config_name, split and revision, the network, or set "
                                 f"benchmarks.{name}.file to a local copy") from error
        frames.append(data.to_pandas())
    return pd.concat(frames, ignore_index=True)


def preflight(definition: dict, name: str = "benchmark") -> str | None:
    """None when the benchmark's source can be read, else a message with the fix. Downloads
    nothing: a local file must exist; a Hub data set is asked for its metadata, or looked up in
    the local cache when HF_HUB_OFFLINE=1."""
    key = f"benchmarks.{name}"
    if "demo_task" in definition:
        return None  # generated on the spot
    if "file" in definition:
        return None if Path(definition["file"]).expanduser().exists() else _missing_file(definition["file"], name)
    if not definition.get("hub"):
        return f"{key}: neither file nor hub is set; give a local JSONL/CSV/Parquet file or a Hub id"
    from pipeline.core import hub

    message = hub.problem(definition["hub"], definition.get("revision"), "dataset", f"{key}.hub",
                          f"set {key}.file to a local JSONL, CSV or Parquet copy")
    if message is None and definition.get("gated") and not hub.offline():
        # a gated repository's metadata is public: ask whether this account may read its files
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError

        try:
            HfApi().auth_check(definition["hub"], repo_type="dataset")
        except GatedRepoError:
            return _gated_message(definition["hub"], name)
        except Exception:  # noqa: BLE001 - reachability was checked above; be silent on the rest
            return None
    return message


# --------------------------------------------------------------------------- normalising


def _source_column(raw: pd.DataFrame, ours: str, theirs: str, name: str) -> pd.Series:
    if theirs not in raw.columns:
        raise BenchmarkError(
            f"benchmarks.{name}.columns.{ours}: the source has no column {theirs!r} "
            f"(it has: {', '.join(map(str, raw.columns))}). Fix: map {ours} to one of them"
        )
    return raw[theirs]


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip()


def _choices(raw: pd.DataFrame, spec: str, name: str) -> list[list[str]]:
    if "," in spec:  # several columns, one choice each (GPQA)
        columns = [_source_column(raw, "choices", c.strip(), name) for c in spec.split(",")]
        return [[_as_text(v) for v in values] for values in zip(*columns)]
    out = []
    for value in _source_column(raw, "choices", spec, name):
        if isinstance(value, str):  # a list serialised in a CSV cell
            value = json.loads(value)
        out.append([_as_text(v) for v in value])
    return out


def normalise(raw: pd.DataFrame, definition: dict, name: str) -> pd.DataFrame:
    """The normalised table (id, problem, answer, choices) of a raw source table."""
    mapping = {ours: ours for ours in ("id", "problem", "answer", "choices") if ours in raw.columns}
    mapping.update(definition.get("columns", {}))
    unknown = sorted(set(mapping) - set(OUR_COLUMNS))
    if unknown:
        raise BenchmarkError(f"benchmarks.{name}.columns: unknown column(s) {', '.join(unknown)}; "
                             f"map any of {', '.join(OUR_COLUMNS)}")
    if definition.get("limit"):
        raw = raw.head(definition["limit"])
    raw = raw.reset_index(drop=True)
    if mapping.get("id") in raw.columns:
        ids = [_as_text(v) for v in raw[mapping["id"]]]
    else:
        ids = [str(i) for i in range(len(raw))]
    problems = [_as_text(v) for v in _source_column(raw, "problem", mapping.get("problem", "problem"), name)]
    choices = _choices(raw, mapping["choices"], name) if "choices" in mapping else [None] * len(raw)
    if "correct" in mapping:
        answers = [_correct_choice(v, c, i, name) for v, c, i in
                   zip(_source_column(raw, "correct", mapping["correct"], name), choices, ids)]
    else:
        answers = [_as_text(v) for v in _source_column(raw, "answer", mapping.get("answer", "answer"), name)]
    table = pd.DataFrame({"id": ids, "problem": problems, "answer": answers, "choices": choices})
    _validate(table, definition, name)
    return table


def _correct_choice(value, choices, problem_id, name) -> str:
    if choices is None:
        raise BenchmarkError(f"benchmarks.{name}.columns.correct needs columns.choices")
    text = _as_text(value) or ""
    if len(text) == 1 and text.upper() in LETTERS:
        index = LETTERS.index(text.upper())
    else:
        index = int(text) if text.isdigit() else -1
    if not 0 <= index < len(choices):
        raise BenchmarkError(f"benchmarks.{name}: problem {problem_id}: correct choice {value!r} is neither a letter "
                             f"nor an index of its {len(choices)} choices")
    return choices[index]


def _validate(table: pd.DataFrame, definition: dict, name: str) -> None:
    problems = []
    if table.empty:
        problems.append("the source has no rows")
    for column in ("id", "problem", "answer"):
        empty = table.loc[table[column].isna() | (table[column] == ""), "id"].tolist()
        if empty:
            problems.append(f"empty {column} in {len(empty)} row(s), e.g. id {empty[:3]}")
    duplicated = table.loc[table["id"].duplicated(), "id"].unique().tolist()
    if duplicated:
        problems.append(f"duplicate ids {duplicated[:5]}; map columns.id to a unique column")
    grader = definition.get("grader")
    has_choices = table["choices"].notna().any()
    if grader == "choice" and not has_choices:
        problems.append("grader choice needs choices (map columns.choices)")
    if grader != "choice" and has_choices:
        problems.append(f"choices are mapped but grader is {grader}; set grader: choice or drop columns.choices")
    if grader == "choice" and has_choices:
        for row in table.itertuples():
            if row.choices is None or any(c in (None, "") for c in row.choices):
                problems.append(f"problem {row.id}: missing or empty choices")
            elif len(set(row.choices)) != len(row.choices):
                problems.append(f"problem {row.id}: two choices have the same text, so the correct letter is ambiguous")
            elif row.answer not in row.choices:
                problems.append(f"problem {row.id}: the answer is not one of its choices")
            elif len(row.choices) > len(LETTERS):
                problems.append(f"problem {row.id}: more than {len(LETTERS)} choices")
    if problems:
        raise BenchmarkError(f"benchmarks.{name}: " + "; ".join(problems[:10])
                             + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))


def load(name: str, definition: dict) -> pd.DataFrame:
    """Read and normalise one benchmark."""
    if "demo_task" in definition:
        from pipeline.data import demo_task

        generated = definition["demo_task"]
        raw = pd.DataFrame(demo_task.benchmark_rows(generated.get("task", {}), generated["form"],
                                                    generated.get("problems", 100), generated.get("seed", 1)))
    elif "file" in definition:
        raw = _read_file(definition["file"], name)
    elif definition.get("hub"):
        raw = _read_hub(definition, name)
    else:
        raise BenchmarkError(f"benchmarks.{name}: neither file nor hub is set")
    return normalise(raw, definition, name)


def letter_spread(table: pd.DataFrame, seed: int) -> Counter:
    """How often each letter is the correct one under `seed`: a sanity check against copies
    whose correct answer always sits at the same position."""
    return Counter(render_question(row, seed)[1] for row in table.to_dict("records"))

