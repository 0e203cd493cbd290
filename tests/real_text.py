"""Real English text for the real-model reference comparison, from Python's own documentation.

Python's standard library carries the text of its language reference's topics
(`pydoc_data.topics`, the help() pages; PSF License, written by the Python documentation
authors): about 465,000 characters of English technical prose with code examples, present in
every Python installation, so nothing is shipped. The topics are joined in sorted order and
tokenized once; calibration windows come from the start, held-out windows from a part of it
disjoint from them (from token HELD_OUT_START on).
"""

from __future__ import annotations

HELD_OUT_START = 60_000  # tokens; the calibration windows end long before (at most 32 x 512)


def token_ids(tokenizer) -> list[int]:
    """The whole text as token ids (SmolLM2's tokenizer: about 113,000)."""
    import pydoc_data.topics

    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def windows(tokenizer, calibration: tuple[int, int], held_out: tuple[int, int]) -> tuple[list[list[int]], list[list[int]]]:
    """(calibration, held_out): `calibration` = (count, length) windows from the start of the
    text, `held_out` = (count, length) windows from HELD_OUT_START on."""
    ids = token_ids(tokenizer)
    (n, length), (m, held_length) = calibration, held_out
    if n * length > HELD_OUT_START or HELD_OUT_START + m * held_length > len(ids):
        raise ValueError(f"{n} x {length} calibration and {m} x {held_length} held-out tokens do not fit "
                         f"disjointly in {len(ids)} tokens")
    calib = [ids[i * length : (i + 1) * length] for i in range(n)]
    held = [ids[HELD_OUT_START + i * held_length : HELD_OUT_START + (i + 1) * held_length] for i in range(m)]
    return calib, held
