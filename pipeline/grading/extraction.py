"""Reading the answer out of an answer segment: its answer statements (boxes, answer keywords,
a heading's block), then what a statement says for a grader (a math span, the options named).
The rules are in pipeline.grading.answers and docs/GRADING.md."""

from __future__ import annotations

import re

LETTERS = "ABCDEFGHIJ"
# a whole answer segment counts as the answer when it is this short (prose is not an answer)
BARE_MAX_CHARS = 64
BARE_MAX_WORDS = 4
# a line of numbers and operators alone ("9 + 8 = 17") is bare however many symbols it has
_ARITHMETIC = re.compile(r"[\d\s.,()+\-*/=×÷−·]+")
_STATED_EQUATION = re.compile(r"^\s*(-?\d+(?:\s*[-+*/×÷−]\s*-?\d+)+)\s+(?:is|equals)\s+(-?\d+)\s*\.?\s*$")
# the most of a statement that is read: a display block below a heading, or one line
STATEMENT_MAX_CHARS = 1000
# statements read, from the last: enough for any answer segment, and a bound on the work
MAX_STATEMENTS = 100


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


FULL_STOP = re.compile(r"(?<![.])[.。]$")  # one closing full stop; "0.333..." keeps its ellipsis


def _strip_markup(text: str) -> str:
    """Drop markdown emphasis, display delimiters, a closing full stop and enclosing $...$."""
    text = text.strip().strip("*_# \t").strip()
    for opener, closer in (("\\[", "\\]"), ("\\(", "\\)")):  # one enclosing pair, not "\(a\), \(b\)"
        if text.startswith(opener) and text.endswith(closer) and text.count(opener) == 1:
            text = text[len(opener):-len(closer)].strip()
    text = FULL_STOP.sub("", text).rstrip()
    dollars = len(re.findall(r"(?<!\\)\$", text))  # "\$" is a dollar sign, not math
    if text.startswith("$") and text.endswith("$") and (dollars == 2 or dollars == 4 and text.startswith("$$")):
        text = FULL_STOP.sub("", text.strip("$").strip()).rstrip()
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
        piece = FULL_STOP.sub("", _LOOSE_ENDS.sub("", piece)).strip()
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


def plain_text(text: str) -> str:
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
    return re.sub(r"\s+", " ", plain_text(text).casefold()).strip(" .,;:!*()[]")


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
    plain = plain_text(statement)
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
    # "4 - 1 is 4.": an equation in words; its value is the answer, not the restated question
    bare = _STATED_EQUATION.sub(r"\1 = \2", bare)
    if (bare and "\n" not in bare and len(bare) <= BARE_MAX_CHARS and not _BOX_RE.search(bare)
            and not _KEYWORD_RE.search(bare)):
        answer = _reading(bare, grader, "weak" if grader == "choice" else "strong", choices)
        # a short line, or an answer that opens it with a remark after ("42 (pairs)")
        opens = bool(answer) and answer != bare and bare.startswith(answer)
        if answer and (len(bare.split()) <= BARE_MAX_WORDS or bare[0] in "$\\" or opens
                       or _ARITHMETIC.fullmatch(bare)):
            return answer, "bare"
    return None, None
