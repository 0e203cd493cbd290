"""Answer extraction and comparison, with hard time limits.

docs/GRADING.md states every rule with examples; in short, an answer segment is graded so:

1. find the answer statements: complete ``\\boxed{}`` / ``\\fbox{}`` boxes (adjacent boxes form
   one answer) and answer keywords ("Final Answer:", a "Final Answer" heading, "Answer:", "the
   answer is", "最终答案", "答案：") with the rest of their line, or the display block or line
   below a bare heading. The LAST statement that reads as an answer wins, so a box that the
   model retracts and follows with "Final Answer: X" is graded on X. With no statement, a short
   one-line segment is the answer itself ("bare"); anything else is `no_answer`.
2. read the statement: math answers keep their first math span (and the spans joined to it by
   "and", "or", commas) or the math run of a plain line, without a remark in words or
   parentheses; choice answers name the options the statement affirms ("(b)", "[C]", "Option
   C", "not B; it is C"), never the article "A" or the pronoun "I", or else the one option whose
   text the statement gives.
3. compare with the gold answer by grader:
   - integer / number: as exact decimals ("025" == 25, "1,000" == "1\\,000" == 1000); an answer
     that is not a plain number (``\\frac{50}{2}``) goes to math-verify;
   - math: unicode and typographic forms normalised (−, √, thin-space thousands, ``\\overline``
     repeating decimals), plain numbers compared exactly, else math-verify 0.9.0
     ``verify(gold, pred)`` (gold first: it is not symmetric);
   - choice: the one named option against the gold letter; two or more is a hedge.
   Percent: "X%" equals X and X/100 (either side); a plain 0.15 does not equal 15. Sets and
   intervals: a set in braces never equals an interval or an ordered pair; an inequality in one
   variable equals the interval it describes.

Status: correct | wrong | ambiguous (a multiple-choice hedge: never credited) | no_answer |
timeout. math-verify's own time limits use SIGALRM in ways that clash with ours, so they are
off; `grade_many` runs every answer in a worker process under a SIGALRM limit and kills (and
replaces) a worker that does not come back, as happens inside C code such as sympy's big-integer
arithmetic.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from multiprocessing.connection import wait

# our worker processes enforce the time limits that math-verify would warn about
logging.getLogger("math_verify").setLevel(logging.ERROR)

GRADERS = ("integer", "number", "math", "choice")
STATUSES = ("correct", "wrong", "ambiguous", "no_answer", "timeout")
LETTERS = "ABCDEFGHIJ"
# a whole answer segment counts as the answer when it is this short (prose is not an answer)
BARE_MAX_CHARS = 64
BARE_MAX_WORDS = 4
# the most of a statement that is read: a display block below a heading, or one line
STATEMENT_MAX_CHARS = 1000
# statements read, from the last: enough for any answer segment, and a bound on the work
MAX_STATEMENTS = 100
# seconds a worker may overrun its soft limit before it is killed (a fresh worker forks in
# milliseconds, so there is little to gain from waiting longer)
KILL_GRACE_S = 0.5


# the columns that identify a graded row (one generated answer): the generations' keys
KEYS = ["model", "variant", "benchmark", "problem_id", "seed", "sample", "sample_seed", "budget", "wait_times"]
# special tokens (<|im_start|>answer) and thinking tags
_SPECIAL = re.compile(r"<\|[^|>]*\|>\w*|</?think>")


def prefix_tail(prefix: str) -> str:
    """The words a template put right before the answer ("Final Answer:"), without its special
    tokens and line breaks, which are not part of what the model answered."""
    return _SPECIAL.sub("", prefix).rsplit("\n", 1)[-1]


@dataclass(frozen=True)
class Verdict:
    status: str
    extracted: str | None
    rule: str | None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# --------------------------------------------------------------------------- boxes

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
# what may separate boxed answers that together form one answer ("x = \boxed{2} or x = \boxed{-3}")
_BOX_SEPARATOR_RE = re.compile(
    r"[\s$,;.*]*(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad|,)[\s$,;*]*)?(?:[a-zA-Z]\s*=\s*)?[\s$*]*"
)


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each "{" -> position of its "}" in one linear pass (no quadratic rescans on
    long or unbalanced input); escaped braces are not counted."""
    pairs, stack = {}, []
    for match in re.finditer(r"(?<!\\)[{}]", text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def _boxes(text: str, across_lines: bool) -> list[tuple[int, str, str]]:
    """(start, content, rule) of every answer box, adjacent boxes joined into one answer;
    `across_lines`: boxes on consecutive lines join too (two boxed letters are one hedge)."""
    pairs = None
    found: list[tuple[int, int, str]] = []  # (start, end, content) of complete boxes
    for match in _BOX_RE.finditer(text):
        at = match.end()
        if at < len(text) and text[at] == "{":
            pairs = pairs if pairs is not None else _matching_braces(text)
            if at in pairs:
                found.append((match.start(), pairs[at] + 1, text[at + 1:pairs[at]]))
        elif match.group().strip() == "\\boxed" and at > match.start() + len("\\boxed"):
            bare = re.match(r"[^\s$.,;]+", text[at:])  # "\boxed 5"
            if bare:
                found.append((match.start(), at + bare.end(), bare.group()))
    # keep the outermost boxes; boxes nest like braces, so one pass over the sorted starts does
    outer, reach = [], -1
    for box in found:
        if box[0] >= reach:
            outer.append(box)
            reach = box[1]
    groups: list[list[tuple[int, int, str]]] = []
    for box in outer:
        if groups:
            between = text[groups[-1][-1][1]:box[0]]
            if (len(between) <= 40 and (across_lines or "\n" not in between.strip(" \t"))
                    and _BOX_SEPARATOR_RE.fullmatch(between)):
                groups[-1].append(box)
                continue
        groups.append([box])
    out = []
    for group in groups:
        answers = list(dict.fromkeys(content.strip() for _, _, content in group))  # a repeated box is one answer
        if len(answers) == 1:
            out.append((group[0][0], answers[0], "boxed"))
        else:
            out.append((group[0][0], ", ".join(answers), "boxed_multi"))
    return out


# --------------------------------------------------------------------------- answer keywords

_KEYWORD_RE = re.compile(
    # strong: what follows is the answer whatever its form
    r"(?P<strong>\bfinal\s+answers?\b[ \t*_]*(?:[:：=]|(?:is|would\s+be|should\s+be|will\s+be)\b[ \t]*[:：]?"
    r"|(?=[ \t*_#]*(?:\n|$)))"
    r"|\banswers?\b[ \t*_]*[:：]"
    r"|(?:最终)?答案[ \t*_]*(?:[:：]|是|为|為)[ \t]*[:：]?|最终答案(?=[ \t*_#]*(?:\n|$)))"
    # weak: "... so the answer is D": a statement only if what follows reads as an answer
    r"|(?P<weak>\banswer\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\b[ \t]*[:：]?)",
    re.I,
)
# multiple choice only: "Option C is correct", "I'd go with B", "(C) is the best"
_CHOICE_KEYWORD_RE = re.compile(
    r"(?i:\b(?:(?:correct|right|best|final)\s+(?:option|choice)\b[ \t*_]*[:：]|(?:option|choice)\b[ \t*_]*is\b)[ \t]*)"
    r"|(?i:\b(?:option|choice)[ \t*_]*[:：][ \t*_]*)(?=[\(\[]?[A-J]\b)"
    # first person only: "if we choose A, ..." in an explanation is no answer
    r"|(?i:\bI(?:['’]d|['’]ll|\s+would|\s+will)?\s+(?:choose|pick|select)\s+|\bgo(?:ing)?\s+with\s+)"
    r"(?=[\(\[]?(?i:(?:option|answer|choice)\s+)?[A-J]\b)"
    # "(C) is correct", "A is the best answer", not "A is the correct formula for X"
    r"|(?<![\w'’\-\\])(?=[\(\[]?[A-J][\)\]]?\**\s+is\s+(?:the\s+)?(?i:correct|right|best)"
    r"(?:\s+(?i:answer|option|choice))?\s*(?:[.!,;:]|$|\s+(?i:because|since|as|for)\b))"
    # a verdict in a review of the options: "B) Correct — it reacts", "**C.** Correct:"
    r"|(?m:^)[ \t*_-]*(?=[\(\[]?[A-J][\).:\]][ \t*_]*(?:[—–:-][ \t]*)?(?i:correct|true)\b)"
)


_FULL_STOP = re.compile(r"(?<![.])[.。]$")  # one closing full stop; "0.333..." keeps its ellipsis


def _strip_markup(text: str) -> str:
    """Drop markdown emphasis, display delimiters, a closing full stop and enclosing $...$."""
    text = text.strip().strip("*_# \t").strip()
    for opener, closer in (("\\[", "\\]"), ("\\(", "\\)")):  # one enclosing pair, not "\(a\), \(b\)"
        if text.startswith(opener) and text.endswith(closer) and text.count(opener) == 1:
            text = text[len(opener):-len(closer)].strip()
    text = _FULL_STOP.sub("", text).rstrip()
    dollars = len(re.findall(r"(?<!\\)\$", text))  # "\$" is a dollar sign, not math
    if text.startswith("$") and text.endswith("$") and (dollars == 2 or dollars == 4 and text.startswith("$$")):
        text = _FULL_STOP.sub("", text.strip("$").strip()).rstrip()
    return text.strip("*_ \t").strip()


def _block_below(text: str, at: int) -> str:
    """The display block (\\[..\\], $$..$$, \\begin..\\end) or the line that follows a heading
    ending at `at`; empty when there is none."""
    start = at
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    head = text[start:start + STATEMENT_MAX_CHARS]
    for opener, closer in (("\\[", "\\]"), ("$$", "$$")):
        if head.startswith(opener):
            close = head.find(closer, len(opener))
            return head[:close + len(closer)] if close >= 0 else ""
    env = re.match(r"\\begin\{(\w+\*?)\}", head)
    if env:
        close = head.find(f"\\end{{{env.group(1)}}}")
        return head[:close + len(env.group(0)) - 2] if close >= 0 else ""
    return head.split("\n", 1)[0]


def _statements(text: str, grader: str) -> list[tuple[int, str, str, str]]:
    """(position, statement text, rule, strength) of the last MAX_STATEMENTS answer statements,
    in text order."""
    found = [(at, content, rule, "box") for at, content, rule in _boxes(text, grader == "choice")[-MAX_STATEMENTS:]]
    matches = list(_KEYWORD_RE.finditer(text))[-MAX_STATEMENTS:]
    if grader == "choice":
        matches += list(_CHOICE_KEYWORD_RE.finditer(text))[-MAX_STATEMENTS:]
    for match in matches:
        strength = "weak" if match.re is _CHOICE_KEYWORD_RE or not match.group("strong") else "strong"
        end = text.find("\n", match.end(), match.end() + STATEMENT_MAX_CHARS)  # bounded: linear in the text
        end = min(len(text), match.end() + STATEMENT_MAX_CHARS) if end < 0 else end
        content = text[match.end():end]
        if not content.strip(" \t\r*_#:."):  # a heading: the answer is on the next lines
            content = _block_below(text, end)
        if _KEYWORD_RE.match(content.strip("*_# \t")):  # "Final Answer: The answer is 5": the later one
            continue
        if _BOX_RE.search(content):  # the box is its own statement; an unclosed one was cut off
            continue
        found.append((match.start(), content, "answer_line", strength))
    found.sort(key=lambda s: s[0])
    return found[-MAX_STATEMENTS:]


# --------------------------------------------------------------------------- reading math

# spans of math in a line of prose: $$..$$, $..$, \(..\), \[..\]
_MATH_SPAN = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_JOINER = re.compile(r"[\s,;]*(?:\b(?:and|or)\b)?[\s,;]*", re.I)
# words that are not part of a math answer: three letters or more, and short English words
_MATH_WORDS = {"and", "or", "sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "lim", "max", "min",
               "gcd", "lcm", "mod", "det", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "inf", "sup"}
_PROSE_RE = re.compile(r"(?<![\\\w])(?:[A-Za-z]+['’][a-z]+|[A-Za-z]{3,}|(?i:is|of|to|at|by|so|an|as|be|if|it|on|we|no))"
                       r"(?![\w'’])")
# weak statements whose next word says they are not answers ("the answer is correct")
_NOT_ANSWERS = {"correct", "right", "wrong", "incorrect", "not", "that", "this", "the", "a", "an", "to", "in",
                "consistent", "indeed", "probably", "likely", "clearly", "definitely", "also", "still", "same",
                "different", "valid", "invalid", "reasonable", "plausible", "as", "given", "unique", "what",
                "which", "one", "option", "choice", "yes", "no", "obviously", "simply", "just", "then", "now"}


_LOOSE_ENDS = re.compile(r"^(?:[\s,;:]|\b(?:and|or)\b)+|(?:[\s,;:]|\b(?:and|or)\b)+$")
# a weak math statement opening with one of these is about the answer, not the answer itself,
# even with math after it ("the answer is not 6", "the answer is in square units, 12 cm^2")
_NOT_ANSWER_OPENERS = {"not", "never", "no", "neither", "in", "that", "this", "correct", "right", "wrong", "incorrect",
                       "consistent", "valid", "invalid", "the", "a", "an", "to", "as", "what", "which", "same"}


def _prose_words(text: str) -> list[re.Match]:
    """Words outside braces that are prose, not math (\\text{cm} and \\sin stay math)."""
    out, depth, last = [], 0, 0
    for match in _PROSE_RE.finditer(text):
        depth += text.count("{", last, match.start()) - text.count("}", last, match.start())
        last = match.start()
        if depth <= 0 and match.group().lower() not in _MATH_WORDS:
            out.append(match)
    return out


def _has_math(text: str) -> bool:
    return bool(re.search(r"[0-9\\^=]", text))


def _math_run(text: str) -> str:
    """The math of a plain line: a remark in parentheses or after a sentence break is dropped,
    then the first stretch between prose words that holds math ("therefore 42 ordered pairs"
    -> "42"); the line itself when it holds no math ("Evelyn", "all real numbers")."""
    cut = text
    for match in re.finditer(r"\(([^()]*)\)", cut):
        if _prose_words(match.group(1)):
            cut = cut[:match.start()]
            break
    sentence = re.search(r"[.;!?](?=\s+[A-Za-z])|,(?=\s+(?:(?:and|or)\s+)?(?!and\b|or\b)[A-Za-z]{3,})"
                         r"|\s[—–]\s|\s--\s", cut)
    if sentence:
        cut = cut[:sentence.start()]
    # "I'm not sure, maybe 5": the remark holds the only math, so the whole line is read
    text = (cut if _has_math(cut) or not _has_math(text) else text).strip()
    pieces, start = [], 0
    for word in _prose_words(text):
        pieces.append(text[start:word.start()])
        start = word.end()
    pieces.append(text[start:])
    for piece in pieces:
        piece = _FULL_STOP.sub("", _LOOSE_ENDS.sub("", piece)).strip()
        if _has_math(piece):
            return piece
    return text.strip(" \t,;:")


def _span(match: re.Match) -> str:
    return next(g for g in match.groups() if g is not None).strip()


def _names_a_quantity(span: str) -> bool:
    """A span that names what is asked rather than giving a value: "$BC$", "$k$", "$f(x)$"."""
    return len(span) <= 20 and not re.search(r"[\d=]|\\(?:frac|sqrt|pi|infty|cup|cap|circ)", span)


def math_answer(statement: str) -> str:
    """The answer a math statement gives (see _math_run); math spans in prose are the answer:
    the first that gives a value ("The length of $BC$ is $13$" -> 13) and those joined to it."""
    text = _strip_markup(statement)
    spans = list(_MATH_SPAN.finditer(text)) if "$" in text or "\\(" in text or "\\[" in text else []
    if spans and not re.search(r"\d", text[:spans[0].start()]):
        first = next((k for k, m in enumerate(spans) if not _names_a_quantity(_span(m))), 0)
        parts = [_span(spans[first])]
        for before, after in zip(spans[first:], spans[first + 1:]):
            if not _JOINER.fullmatch(text[before.end():after.start()]):
                break
            parts.append(_span(after))
        return ", ".join(parts).strip()
    return _math_run(text)


def _reads_as_math(answer: str, strength: str) -> bool:
    if not answer:
        return False
    if strength == "box" or _has_math(answer):
        return True
    words = answer.split()
    if strength == "strong":
        return len(words) <= BARE_MAX_WORDS
    return len(words) <= 3 and words[0].lower().strip(".,:") not in _NOT_ANSWERS


# --------------------------------------------------------------------------- reading options

_LETTER_RE = re.compile(
    r"[\(\[]\s*(?P<wrapped>[A-Ja-j])\s*[\)\]]"                       # (B) [c] (a)
    r"|(?i:\b(?:option|choice)\s*)[\(\[]?(?P<named>[A-Ja-j])\b"      # Option C, choice (b)
    r"|^(?P<lead>[a-j])(?=[).:](?:\s|$))"                             # "b) text" at the start
    r"|(?<![\w'’\-\\])(?P<bare>[A-J])(?![\w'’\-])"                   # a capital standing alone
)
# "A"/"I" followed by one of these is an option ("A is correct"); by another word, an article
# or the pronoun ("A careful check", "I think")
_OPTION_VERBS = {"is", "was", "would", "could", "should", "must", "might", "may", "will", "can", "seems", "appears",
                 "looks", "fits", "matches", "gives", "holds", "remains", "and", "or", "as", "because", "since",
                 "with", "only", "alone", "best", "correct", "nor"}
_NEGATED = re.compile(
    r"(?i:\bnot|n[’']t(?:\s+be)?|\brather\s+than|\binstead\s+of|\bexcept(?:\s+for)?|\bother\s+than|\bneither"
    r"|\bnor|\bexclude|\beliminate|\brule\s+out)\s+(?:(?i:options?|choices?|answers?)\s+)?[\(\[]?\**$"
)
# a remark after the answer: its letters are not answers ("B, because A fails")
_REMARK = re.compile(r"(?i:\s(?:because|since|as|which|where|given|due\s+to|while|whereas|but|though|although)\b)"
                     r"|\((?=[^()]*[A-Za-z]{3,})(?!(?i:option|choice)\s+[A-J]\s*\))"
                     r"(?!\s*(?i:or|and|maybe|possibly|perhaps|alternatively|either)\b)[^()]*\)")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|textrm|operatorname|emph)\s*\{([^{}]*)\}")


def _plain(text: str) -> str:
    """Plain text of a short answer: no $, \\text{..} wrappers, spacing commands or emphasis."""
    text = _TEXT_COMMAND.sub(r"\1", text)
    text = re.sub(r"\\[,;:! ]|\\q?quad|\\left|\\right|\{,\}|\\\$|\$|\\\(|\\\)|\\\[|\\\]|\*\*|__", " ", text)
    return " ".join(text.replace("\\dfrac", "\\frac").split()).rstrip(".").strip()


def _letters_in(sentence: str, options: str) -> list[str]:
    named = []
    for match in _LETTER_RE.finditer(sentence):
        letter = next(g for g in match.groups() if g is not None).upper()
        if letter not in options or _NEGATED.search(sentence[max(0, match.start() - 30):match.start()]):
            continue
        if match.group("bare") and letter in "AI":
            after = re.match(r"\s+([a-z]+)", sentence[match.end():])
            if after and after.group(1) not in _OPTION_VERBS:
                continue  # the article "A", the pronoun "I"
        if letter not in named:
            named.append(letter)
    return named


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", _plain(text).casefold()).strip(" .,;:!*()[]")


def _option_by_text(statement: str, choices: list[str]) -> list[str]:
    """The options whose text the statement gives: the whole statement, else the options whose
    text (with a word of three letters or more) it contains, a shorter one inside a longer one
    not counted."""
    said = _normal(statement)
    if not said:
        return []
    exact = [LETTERS[k] for k, choice in enumerate(choices) if _normal(choice) == said]
    if exact:
        return exact
    inside = [(k, _normal(c)) for k, c in enumerate(choices)
              if re.search(r"[a-z]{3,}", _normal(c)) and re.search(rf"(?<!\w){re.escape(_normal(c))}(?!\w)", said)]
    return [LETTERS[k] for k, text in inside if not any(text != other and text in other for _, other in inside)]


def options_named(statement: str, choices: list[str] | None = None) -> list[str]:
    """The option letters a statement affirms, in order: one is an answer, two or more a
    hedge, none no answer. The first sentence that names an option counts; in it, a remark
    ("because ...", a parenthesis in words) and negated letters ("not B") do not."""
    options = LETTERS[:len(choices)] if choices else LETTERS
    plain = _plain(statement)
    token = re.fullmatch(r"\(?([A-J]{2,4}|[a-j])\)?", plain)
    if token:  # "\boxed{c}"; "\boxed{BC}": two letters in one box
        return sorted(set(token.group(1).upper()) & set(options))
    for sentence in _SENTENCE.split(plain):
        while sentence:  # "I cannot be sure, but C": no option before the remark, so read on
            remark = _REMARK.search(sentence)
            named = _letters_in(sentence[:remark.start()] if remark else sentence, options)
            if named:
                return named
            sentence = sentence[remark.end():] if remark else ""
    if choices:
        return _option_by_text(plain, choices)
    return []


def as_letter(text: str) -> str | None:
    """The one option letter an extracted answer names: "(C)", "C", "C) text", "**C**", "Option C"."""
    named = options_named(text)
    return named[0] if len(named) == 1 else None


# --------------------------------------------------------------------------- extraction


def _reading(statement: str, grader: str, strength: str, choices) -> str | None:
    if grader == "choice":
        text = _strip_markup(statement)
        if not text:
            return None
        if options_named(text, choices) or strength == "box":
            return text
        words = text.split()
        if len(words) <= BARE_MAX_WORDS and words[0].lower().strip(".,:") not in _NOT_ANSWERS:
            return text  # an answer that is no option: wrong, not unanswered
        return None
    if strength == "weak" and _strip_markup(statement).split(" ", 1)[0].lower().strip(".,:") in _NOT_ANSWER_OPENERS:
        return None
    answer = math_answer(statement) if strength != "box" else statement.strip()
    return answer if _reads_as_math(answer, strength) else None


# a line that is nothing but an option letter: "**C**", "(C)", "C)", "[c]"
_LONE_LETTER = re.compile(r"[\(\[]?[A-J][\)\]]?|[\(\[][a-j][\)\]]")


def extract(text: str, grader: str, choices: list[str] | None = None) -> tuple[str | None, str | None]:
    """(extracted answer, rule) from an answer segment; (None, None) when there is none."""
    if not text or not text.strip():
        return None, None
    for _, statement, rule, strength in reversed(_statements(text, grader)):
        answer = _reading(statement, grader, strength, choices)
        if answer:
            return answer, rule
    if grader == "choice" and "\n" in text.strip():
        last = _strip_markup(text.rstrip().rsplit("\n", 1)[-1])
        if _LONE_LETTER.fullmatch(last):
            return last, "last_line"
    bare = _strip_markup(text)
    if (bare and "\n" not in bare and len(bare) <= BARE_MAX_CHARS and not _BOX_RE.search(bare)
            and not _KEYWORD_RE.search(bare)):
        answer = _reading(bare, grader, "weak" if grader == "choice" else "strong", choices)
        # a short line, or an answer that opens it with a remark after ("42 (pairs)")
        opens = bool(answer) and answer != bare and bare.startswith(answer)
        if answer and (len(bare.split()) <= BARE_MAX_WORDS or bare[0] in "$\\" or opens):
            return answer, "bare"
    return None, None


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
    return _FULL_STOP.sub("", text.strip()).strip()


# --------------------------------------------------------------------------- comparison

_NUMBER_RE = re.compile(
    r"(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)"
    r"(?:\s*(?P<pct>\\?%|(?i:percent))|\s*(?:\^\s*\{?\\circ\}?|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*))?"
)


def _number(text: str) -> tuple[Decimal, bool] | None:
    """(value, written as a percent) of a plain number, ignoring thousands commas and trailing
    units; None when the text is not one."""
    plain = re.sub(r"^\(?[A-E]\)\s*", "", _plain(normalise(text)))  # "(D) 1625": an AMC option label
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
    units = re.sub(r"(?i)percent", "", _plain(gold + " " + pred))
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
            return "correct" if _plain(extracted).casefold() == _plain(gold).casefold() else "wrong"
        named = options_named(extracted, choices)
        if len(named) > 1:
            return "ambiguous"
        return "correct" if named == [gold] else "wrong"
    if grader in ("integer", "number"):
        gold_number, number = _number(gold), _number(extracted)
        if gold_number is not None and number is not None:
            return "correct" if _numbers_equal(gold_number, number) else "wrong"
    return "correct" if _compare_math(gold, extracted) else "wrong"


def grade_one(gold: str, answer: str, grader: str, choices: list[str] | None = None) -> Verdict:
    """Grade one answer segment in this process, without a time limit (see grade_many).
    `choices`: a multiple-choice question's options in the order shown (A, B, ...), so that an
    answer giving an option's text is read as that option."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    extracted, rule = extract(answer, grader, choices)
    if extracted is None:
        return Verdict("no_answer", None, None)
    return Verdict(judge(gold, extracted, grader, choices), extracted, rule)


# --------------------------------------------------------------------------- worker pool


class _SoftTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _SoftTimeout


def _serve(conn) -> None:
    """Worker loop: say "ready", then grade (index, gold, answer, grader, choices, limit) tasks
    until None arrives."""
    signal.signal(signal.SIGALRM, _on_alarm)
    grade_one("1", "\\boxed{\\frac{1}{2}}", "math")  # first-use costs before any time limit runs
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        index, gold, answer, grader, choices, limit = task
        extracted = rule = None
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            extracted, rule = extract(answer, grader, choices)
            if extracted is None:
                verdict = Verdict("no_answer", None, None)
            else:
                verdict = Verdict(judge(gold, extracted, grader, choices), extracted, rule)
        except _SoftTimeout:
            verdict = Verdict("timeout", extracted, rule)
        except RecursionError:  # deeply nested LaTeX: unparsable, not a hang
            verdict = Verdict("wrong", extracted, rule)
        except Exception as error:  # noqa: BLE001 - one odd answer must not stop the others
            verdict = Verdict("wrong", extracted, f"{rule} ({type(error).__name__})")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send((index, verdict))


class _Worker:
    """One grading process. Its time limit starts when a task is sent, and tasks are sent only
    once it has said it is ready, so a slow start is never mistaken for a slow answer."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0

    def send(self, index: int, task: tuple, limit: float) -> None:
        self.conn.send((index, *task, limit))
        self.task, self.deadline = index, time.monotonic() + limit + KILL_GRACE_S

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(None)
                self.process.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _context():
    # forkserver: workers fork from a clean process that has imported this module (and
    # math-verify) once, so replacing a killed worker takes milliseconds, and no thread state
    # of the parent (pyarrow pools) is inherited
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.grading.answers", "math_verify", "sympy"])
    return ctx


def _unfinished(item: tuple, grader: str) -> Verdict:
    """A timeout verdict for an answer whose worker had to be killed; extraction is linear in
    the text, so it is safe to repeat here for the record."""
    return Verdict("timeout", *extract(item[1] or "", grader, _choices_of(item)))


def _choices_of(item: tuple) -> list[str] | None:
    return list(item[2]) if len(item) > 2 and item[2] is not None else None


def grade_many(items: list[tuple], grader: str, timeout_s: float = 5.0, workers: int = 0,
               progress=None) -> list[Verdict]:
    """Grade (gold, answer segment) or (gold, answer segment, choices) items in `workers`
    processes (0: one per core), each answer under a time limit of `timeout_s` seconds; results
    come back in input order."""
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
    results: list[Verdict | None] = [None] * len(items)
    if not items:
        return []
    ctx = _context()
    pool = [_Worker(ctx) for _ in range(min(workers or available_cores(), len(items)))]
    pending = deque(range(len(items)))
    done = 0

    def finish(index: int, verdict: Verdict) -> None:
        nonlocal done
        results[index] = verdict
        done += 1
        if progress is not None:
            progress(done, len(items))

    try:
        while pending or any(w.task is not None for w in pool):
            for worker in pool:
                if worker.ready and worker.task is None and pending:
                    index = pending.popleft()
                    item = items[index]
                    worker.send(index, (str(item[0]), item[1] or "", grader, _choices_of(item)), timeout_s)
            waiting = [w for w in pool if not w.ready or w.task is not None]
            deadlines = [w.deadline for w in waiting if w.task is not None]
            ready = set(wait([w.conn for w in waiting],
                             timeout=max(0.0, min(deadlines) - time.monotonic()) if deadlines else None))
            for slot, worker in enumerate(pool):
                if worker.conn in ready:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):  # the worker died (out of memory, a crash)
                        if worker.task is None:
                            raise RuntimeError("a grading worker process failed to start") from None
                        finish(worker.task, _unfinished(items[worker.task], grader))
                        worker.stop(kill=True)
                        pool[slot] = _Worker(ctx)
                        continue
                    if message == "ready":
                        worker.ready = True
                    else:
                        worker.task = None
                        finish(*message)
                elif worker.task is not None and time.monotonic() >= worker.deadline:
                    finish(worker.task, _unfinished(items[worker.task], grader))
                    worker.stop(kill=True)
                    pool[slot] = _Worker(ctx)
    finally:
        for worker in pool:
            worker.stop()
    return results  # type: ignore[return-value]
