"""Comparing an extracted answer with the gold one by grader: exact decimals, normalised math
forms, math-verify, named options. The rules are in pipeline.grading.answers and docs/GRADING.md."""

from __future__ import annotations

import functools
import logging
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from pipeline.grading.extraction import FULL_STOP, LETTERS, options_named, plain_text

# our worker processes enforce the time limits that math-verify would warn about
logging.getLogger("math_verify").setLevel(logging.ERROR)


# --------------------------------------------------------------------------- normalising math

_UNICODE = str.maketrans({
    "\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u2260": "\\ne ", "\u222a": "\\cup ", "\u2229": "\\cap ", "\u00b0": "^\\circ ", "\u00b2": "^2", "\u00b3": "^3",
    "\u00bd": "\\frac{1}{2}", "\u2153": "\\frac{1}{3}", "\u2154": "\\frac{2}{3}", "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}", "\uff1a": ":", "\uff0c": ",", "\u3002": ".", "\u00a0": " ", "\u2009": " ",
    "\u202f": " ", "\u2006": " ", "\u2008": " ", "\u200b": "",
})
# thousands separators: thin spaces, "\,", "\ ", "{,}" between groups of three digits
_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\[,!: ]|\\thinspace\s*|\{,\}|[\u2009\u202f\u00a0\u2006\u2008])(?=\d{3}(?!\d))")
_ROOT_RE = re.compile(r"([√∛∜])\s*(?:\(([^()]*)\)|([\w.]+))")
_REPEATING_RE = re.compile(r"(-?)(\d*)\.(\d*)\\(?:overline|dot)\s*(?:\{(\d+)\}|(\d))")
_ELLIPSIS_RE = re.compile(r"(-?)(\d*)\.(\d*?)(\d+?)\4+(?:\\ldots|\\dots|\.\.\.|…)")


def _repeating(sign: str, whole: str, fixed: str, period: str) -> str:
    # 0.1(6) = (16 - 1) / (10 * 9): the digits through one period, less the fixed ones
    value = int(whole or 0) + Fraction(int(fixed + period) - int(fixed or 0),
                                       10 ** len(fixed) * (10 ** len(period) - 1))
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


_NUMBER_WORDS = {word: str(value) for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def normalise(text: str) -> str:
    """Unicode and typographic forms of a math answer in plain LaTeX: −, √2, 1 000, 1\\,000,
    0.\\overline{3}, 0.333..., a number in words up to twenty, a closing full stop."""
    text = _THOUSANDS_RE.sub("", text.strip())
    text = _NUMBER_WORDS.get(text.lower(), text)
    if re.fullmatch(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", text):  # "1 000 000"
        text = text.replace(" ", "")
    if not text.isascii():
        text = _ROOT_RE.sub(lambda m: {"√": "\\sqrt", "∛": "\\sqrt[3]", "∜": "\\sqrt[4]"}[m.group(1)]
                            + "{" + (m.group(2) if m.group(2) is not None else m.group(3)) + "}", text)
        text = text.translate(_UNICODE)
    if "over" in text or "dot" in text:
        text = _REPEATING_RE.sub(lambda m: _repeating(m[1], m[2], m[3], m[4] or m[5]), text)
    if "." in text or "…" in text:
        text = _ELLIPSIS_RE.sub(lambda m: _repeating(m[1], m[2], m[3], m[4]), text)
    return FULL_STOP.sub("", text.strip()).strip()


# --------------------------------------------------------------------------- comparison

_NUMBER_RE = re.compile(
    r"(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)"
    r"(?:\s*(?P<pct>\\?%|(?i:percent))|\s*(?:\^\s*\{?\\circ\}?|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*))?"
)


def _number(text: str) -> tuple[Decimal, bool] | None:
    """(value, written as a percent) of a plain number, ignoring thousands commas and trailing
    units; None when the text is not one."""
    plain = re.sub(r"^\(?[A-E]\)\s*", "", plain_text(normalise(text)))  # "(D) 1625": an AMC option label
    match = _NUMBER_RE.fullmatch(plain) if len(plain) <= 100 else None
    if not match:
        return None
    try:
        return Decimal(match.group("num").replace(",", "")), match.group("pct") is not None
    except InvalidOperation:
        return None


def as_number(text: str) -> Decimal | None:
    """The value of a plain number, ignoring thousands commas and trailing units; else None."""
    number = _number(text)
    return number[0] if number else None


def _numbers_equal(gold: tuple[Decimal, bool], pred: tuple[Decimal, bool]) -> bool:
    """The percent policy: "X%" equals X and X/100 on the other side; otherwise exact."""
    (gold_value, gold_pct), (value, pct) = gold, pred
    if gold_pct == pct:
        return gold_value == value
    percent, other = (gold_value, value) if gold_pct else (value, gold_value)
    return other == percent or other == percent / 100


def _shape(text: str) -> str | None:
    """"set" for {..}, "interval" for a bracketed pair with a closed end, infinity or a union,
    "pair" for (a, b), which may be a point or an open interval."""
    t = re.sub(r"\\left|\\right|\s", "", text)
    if t.startswith("\\{") and t.endswith("\\}"):
        return "set"
    if "\\cup" in t or re.fullmatch(r"[\(\[][^()\[\]]*,[^()\[\]]*[\)\]]", t) and (
            t[0] == "[" or t[-1] == "]" or "\\infty" in t):
        return "interval"
    if re.fullmatch(r"\([^()]*,[^()]*\)", t):
        return "pair"
    return None


_INEQUALITY_OPS = (("\\leqslant", "\\le"), ("\\geqslant", "\\ge"), ("\\leq", "\\le"), ("\\geq", "\\ge"),
                   ("<=", "\\le"), (">=", "\\ge"), ("\\lt", "<"), ("\\gt", ">"))


def _interval_of(text: str) -> str | None:
    """The interval an inequality in one variable describes: "-1 < x \\le 3" -> "(-1, 3]"."""
    for old, new in _INEQUALITY_OPS:
        text = text.replace(old, new)
    parts = [p.strip() for p in re.split(r"(<|>|\\le(?![a-z])|\\ge(?![a-z]))", text)]
    if len(parts) not in (3, 5) or not all(parts[0::2]):
        return None
    ops = parts[1::2]
    if all(op in (">", "\\ge") for op in ops):  # write it with "<": b > x > a is a < x < b
        parts = parts[::-1]
        ops = ["<" if op == ">" else "\\le" for op in ops[::-1]]
    elif not all(op in ("<", "\\le") for op in ops):
        return None
    terms = parts[0::2]
    var = [k for k, t in enumerate(terms) if re.fullmatch(r"[a-z]", t)]
    if len(var) != 1 or len(terms) == 3 and var != [1]:
        return None
    low, high = ("-\\infty", "(") , ("\\infty", ")")
    if var[0] > 0:
        low = (terms[var[0] - 1], "(" if ops[var[0] - 1] == "<" else "[")
    if var[0] < len(terms) - 1:
        high = (terms[var[0] + 1], ")" if ops[var[0]] == "<" else "]")
    return f"{low[1]}{low[0]}, {high[0]}{high[1]}"


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(f"${gold}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                 parsing_timeout=None)


def _math_verify(gold: str, pred: str, raw: bool) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_parsed = _parse_gold(gold)
    # text with math delimiters is searched as is; a bare expression is read as one answer
    pred_parsed = parse(pred if raw else f"\\boxed{{{pred}}}",
                        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return verify(gold_parsed, pred_parsed, timeout_seconds=None)


def _compare_math(gold: str, pred: str) -> bool:
    gold, pred = normalise(gold), normalise(pred)
    if "," not in gold and re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", pred):  # "1,000"
        pred = pred.replace(",", "")
    gold_number, number = _number(gold), _number(pred)
    units = re.sub(r"(?i)percent", "", plain_text(gold + " " + pred))
    if gold_number is not None and number is not None and not re.search(r"[A-Za-z]{2,}", units):
        return _numbers_equal(gold_number, number)
    gold_shape, shape = _shape(gold), _shape(pred)
    if "set" in (gold_shape, shape) and {gold_shape, shape} & {"interval", "pair"}:
        return False  # a set of values is no interval and no ordered pair
    if gold_shape in ("interval", "pair") and re.search(r"<|>|\\[lg]e", pred):
        pred = _interval_of(pred) or pred
    raw = any(marker in pred for marker in ("$", "\\(", "\\["))
    return _math_verify(gold, pred, raw)


def judge(gold: str, extracted: str, grader: str, choices: list[str] | None = None) -> str:
    """The status of an extracted answer: correct, wrong or (a multiple-choice hedge) ambiguous."""
    gold = str(gold).strip()
    if grader == "choice":
        if gold not in LETTERS:
            return "correct" if plain_text(extracted).casefold() == plain_text(gold).casefold() else "wrong"
        named = options_named(extracted, choices)
        if len(named) > 1:
            return "ambiguous"
        return "correct" if named == [gold] else "wrong"
    if grader in ("integer", "number"):
        gold_number, number = _number(gold), _number(extracted)
        if gold_number is not None and number is not None:
            return "correct" if _numbers_equal(gold_number, number) else "wrong"
    return "correct" if _compare_math(gold, extracted) else "wrong"
