"""Whether a licence value read as free text forbids commercial use: `_name_non_commercial`.

A value that is not an SPDX expression (one id, a name, prose) is read whole, as one name, by the
rules below; so is each licence of an expression (licences.py reads it part by part). The rules are
regexes and word-by-word readers over word sets, each bounded so that a long value (a sidecar's
field can be a megabyte) reads in linear time. The lists of known licences they consult live in
licencetables.py.

A listed licence by its spelled-out name ("MIT License", "CC BY 4.0") reads as its id
(licencetables._SPELLED_OUT), and an open licence's id or a listed licence's spelled-out name followed
only by an offer of a commercial licence ("GPL-3.0; commercial licenses available", "MIT License. For
commercial licensing, contact us", dual licensing) as unlisted, not barred (_COMMERCIAL_OFFER); the offer
alone ("For commercial licensing, contact us", "contact us for commercial licensing") leaves commercial
use to a licence not granted, and bars.

A value that denies commercial use ("You may not use the material for commercial purposes", as CC BY-NC's
legal code says it, "cannot be used commercially": _negated_commercial_use) bars, as does a use granted
for a purpose that ends the clause ("Free for research": _granted_for_a_purpose), and "commercial"
misspelt ("Non-comercial", "NonCommerical": _COMMERCIAL_SPELLING) reads as spelt right. A use granted to
people who are a purpose ("Available to academic researchers") bars where they end the clause, as does a
purpose with its use word as a note beside a licence ("CC BY 4.0 (academic use)", "MIT / personal use") or
a custom id naming only a purpose (`LicenseRef-academic`: _purpose_clause), "Commercial rights reserved",
and the Academic Public License (licencetables._NON_COMMERCIAL_NAMES). What a thing is ("This is not a
commercial product": _describes) is no denial of commercial use, nor is "commercial rights with the
license" (_WITH_NAMED) a need for another licence. "for commercial and non-commercial use" (_BOTH_USES),
"production and non-production use" (_BOTH_PRODUCTION) and "Available to researchers, companies and the
public" (_OPEN_RECIPIENTS) grant commercial use, not a limit where the pair ends the value; each such
value reads as unlisted free text, as does such a pair after a listed licence that leads the value and
ending it, or before "under" one ("MIT licence for commercial and non-commercial use", "... use under CC
BY 4.0", as "MIT; free for commercial use" reads; not "MIT licence for commercial and non-commercial use.
Fee required.", which the pair's "non-commercial" bars). People of a purpose ("Available to students") and
a purpose with who holds it ("Available to academic institutions": _HOLDERS) bar as "Available to academic
researchers" does; so do a purpose alone as a note ("CC BY 4.0 (academic)", "MIT + research use"), the use
itself granted for one ("use for research") and commercial rights kept back in other words ("Rights for
commercial use reserved", "The authors reserve all commercial rights"). An `only` after who made the data,
in its clause ("annotated by research groups only": _only_after_a_purpose), is no limit, as one before it
is not.

A limiting word bars a restricting purpose before it as `only` after it does: "Only academic use
permitted", "Restricted to personal use", "Can only be used for research" as "academic use only"
(_limited_to_a_purpose: within a clause, a few words apart, and not where a noun follows the purpose word:
"only the research code is included"; not negated: "not limited to research"; not who made the data or
where: "annotated only by research groups", _MADE_WORDS). A note about the data beside a licence is no
restriction: a purpose word naming a part of the data ("testing split only has 500 rows", _DATA_PART),
"email" as a noun for what was removed ("email addresses removed", _EMAIL_REMOVED), "no commercial licence
required" (it grants); such a value reads as free text, unlisted.

"Education" is a purpose, and "university" before a purpose, who holds one or a use ("university staff",
"university use": _UNIVERSITY) reads as "academic", not in a university's name; who holds a purpose
followed by where or how ("Available to academic users upon request", "... worldwide", "... and
universities": _HOLDER_TAIL) bars; so do a purpose note after "+" or "&" without spaces ("MIT+research
use"; not "commercial & research use") or after a comma that follows a listed licence alone ("MIT,
academic"), and commercial rights kept by who made the data ("Commercial rights remain with the authors",
"The authors retain commercial rights": _KEEPER; not "You retain ..."). A purpose after a field's name
("Genre: academic": _LABELS) or alone after "|" ("CC BY 4.0 | academic") is no note, and a pair after
"Licensed under" a listed licence grants as one after the licence alone.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

from pipeline.invisible import visible
from pipeline.sources.licencetables import (
    _NON_COMMERCIAL_NAMES,
    _SPELLED_OUT,
    COMMERCIAL_OK,
    NON_COMMERCIAL_IDS,
    _spelled,
    listed_id,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# "NC" as a part of the name, not inside a word (CC-BY-NC-4.0, CC-BY-NC-SA-4.0, CC-BY-NC4.0) or run
# into "BY" (CC-BYNC-4.0, CCBYNC4.0), or words that limit use to non-commercial purposes
# ("non-commercial", "not for commercial use", "no commercial use"; not "no commercial
# restrictions", which says the opposite). "research use only" and the like: _RESTRICTING_PATTERN.
# Nor "no commercial licence required" where the sentence ends there: it grants commercial use; "no
# commercial licence required for research" implies one is for commercial use, and stays barred, as
# does one qualified after a comma, which goes on with the same sentence ("..., for research",
# "..., personal use": the rules that read the rest of the value take neither for a restriction).
# "licence", "license", "licences", "licensing": the word in either spelling and its forms
_LICENCE_WORD = r"licen[cs](?:es?|ing)"
_NO_LICENCE_NEEDED = (
    rf"{_LICENCE_WORD}[-_ ](?:(?:is|are)[-_ ])?(?:required|needed|necessary)(?=[-_ ]*+(?:[.;)]|$))"
)
# "commercial" as it gets misspelt on cards ("Non-comercial", "NonCommerical", "commercal"): read as
# other words, each left a non-commercial licence unlisted, which a `commercial_reason` let through
_COMMERCIAL_SPELLING = r"comm?er(?:c?ial|ical|cal)"
# kept back: "reserved", "are strictly reserved", "remain retained"
_RESERVED = r"(?:(?:are|is|remain|remains)[-_ ])?(?:strictly[-_ ])?(?:reserved|retained)\b"
# What sets "reserved" apart from what it keeps back: a space, a colon, or a dash ("Commercial use \u2014
# reserved", "Commercial use - reserved"); possessive, so a long run is never given back
_NOTE_SEP = r"(?:[-_ ]*+[:\u2013\u2014][-_ ]*+|[-_ ]++)"
# Who made the data, keeping commercial rights back: "the authors", "the (original) creators", "the
# university", "us"; not "you", "the user", "the licensee" (rights that stay with them are granted)
_KEEPER = (
    r"(?:(?:the|its|their|our)[-_ ])?(?:original[-_ ])?(?:authors?|creators?|owners?|(?:copyright|rights)"
    r"[-_ ]holders?|licensors?|publishers?|developers?|maintainers?|universit(?:y|ies)|institutes?"
    r"|compan(?:y|ies)|organi[sz]ations?|us)\b"
)
# How rights are kept: "remain with", "stay with", "belong to", "are held by", "are owned by"
_KEPT_BY = (
    r"(?:(?:remains?|stays?|rests?|lies?)[-_ ]with|belongs?[-_ ]to"
    r"|(?:(?:are|is|remain|remains)[-_ ])?(?:held|kept|owned|retained)[-_ ]by)"
)
_NAMED_PATTERN = (
    # "CC BY NC" run into "SA" or "ND" too: "CCBYNCSA", "ccbyncnd4.0" (after "cc": "published by NCSA"
    # names the NCSA licence, which allows commercial use)
    r"(^|[^a-z])nc([^a-z]|$)|by[-_ ]?nc([^a-z]|$)|cc[-_ ]?by[-_ ]?nc[-_ ]?(?:sa|nd)([^a-z]|$)"
    rf"|non[-_ ]?{_COMMERCIAL_SPELLING}|not[-_ ]for[-_ ]{_COMMERCIAL_SPELLING}"
    # a non-production licence (Mistral AI's MNPL) allows testing and research, not commercial use
    # ("production and non-production use" grants both where it ends its clause: _both_uses)
    r"|non[-_ ]?production"
    # "Commercial rights reserved": the rights to commercial use are kept back, not granted; so are
    # "Commercial use reserved", "Rights for commercial use are reserved", "Commercial rights retained
    # by the authors", "The authors reserve all commercial rights" (_RESERVED); "Commercial rights:
    # reserved", "Rights for commercial purposes reserved", "Commercial use \u2014 reserved" (_NOTE_SEP)
    rf"|\b{_COMMERCIAL_SPELLING}{_NOTE_SEP}(?:(?:use|usage|exploitation|purposes?){_NOTE_SEP})?"
    rf"(?:rights?{_NOTE_SEP})?{_RESERVED}"
    # "Reserved: commercial use" (a label, then what it keeps back), unless a grant follows
    rf"|\breserved[ ]*+(?:[:\u2013\u2014]|-[ ])[-_ ]*+{_COMMERCIAL_SPELLING}[-_ ]"
    r"(?:use|usage|exploitation|rights?)\b"
    r"(?![-_ ]++(?:(?:is|are)[-_ ]++)?(?:allowed|permitted|ok|welcome|granted)\b)"
    # "Commercial rights remain with the authors", "... belong to the university", "... are held by
    # the authors", "The authors retain commercial rights": kept by those who made the data (_KEEPER),
    # not by "you" ("You retain all commercial rights to your outputs" is a licensee's)
    rf"|\b{_COMMERCIAL_SPELLING}[-_ ](?:(?:use|usage|exploitation)[-_ ])?rights?[-_ ]{_KEPT_BY}[-_ ]{_KEEPER}"
    rf"|\b{_KEEPER}[-_ ](?:retains?|keeps?|holds?)[-_ ](?:(?:all|the|their|its|any)[-_ ])?"
    rf"{_COMMERCIAL_SPELLING}[-_ ](?:(?:use|usage|exploitation)[-_ ])?rights?\b"
    rf"|\brights?[-_ ](?:for|to|of)[-_ ]{_COMMERCIAL_SPELLING}[-_ ]"
    rf"(?:(?:use|usage|exploitation|purposes?):?[-_ ])?{_RESERVED}"
    r"|\breserves?[-_ ](?:(?:all|the|its|their)[-_ ])?(?:rights?[-_ ](?:for|to|of)[-_ ])?"
    rf"{_COMMERCIAL_SPELLING}[-_ ](?:use|usage|exploitation|rights?)\b"
    rf"|\bno[-_ ]{_COMMERCIAL_SPELLING}(?![-_ ](restriction|limitation|{_NO_LICENCE_NEEDED}))"
)
# Purposes (and people) a use may be granted for that leave commercial use out, one list for both
# rules that read them: "research use only" (_RESTRICTING_WORD) and "free for academic use", "for
# testing and evaluation purposes" (_for_a_purpose). "for researchers only", "academics only"; "for
# private use" is personal use; testing, benchmarking and demonstration grant a look at the data,
# not training on it; "non-profit use only" is as narrow (_NON_PROFIT spells it one word). Students,
# teachers, scholars, academia and universities are people (or places) of a purpose as researchers
# are: "Available to students", "Free for students and educators" read unlisted.
_PURPOSES = (
    "research",
    "researcher",
    "researchers",
    "academic",
    "academics",
    "academia",
    "scholars",
    "student",
    "students",
    "teachers",
    "educators",
    "universities",
    "personal",
    "private",
    "educational",
    "education",
    "teaching",
    "evaluation",
    "testing",
    "benchmarking",
    "demonstration",
    "scientific",
    "nonprofit",
)
_NON_PROFIT_PATTERN = r"\bnon[-_ ]?profit\b|\bnot[-_ ]for[-_ ]profit\b"
# A purpose word that names a part of the data ("private messages removed; only public posts", "testing
# split only has 500 rows") is no purpose: the `only` after it restricted an open licence. Parts of a
# dataset only; not "data" ("research data only" may mean research use), nor "information".
_DATA_PART = r"(?:splits?|sets?|subsets?|folds?|partitions?|messages?|posts|conversations?|chats?)\b"
# Who holds a purpose, after its run: "Available to academic institutions", "Provided to research labs"
# name who may have the data as "to academic researchers" does, where the noun ends the clause. Not
# "community": "released to the research community" says who it was shared with.
_HOLDERS = frozenset(
    (
        *("institutions", "institution", "institutes", "institute", "users", "groups", "labs"),
        *("laboratories", "organisations", "organizations", "partners", "centres", "centers"),
        *("departments", "teams", "staff", "members", "bodies", "entities", "faculty", "personnel"),
    )
)
# "university" (or "college") before a purpose, who holds one or a use ("university staff", "university
# students", "university use") is a purpose as "academic" is: read as "academic" (_academic). Not
# before anything else: "Created at Stanford University", "University of X", "Stanford University
# License" name a place or a licence.
_UNIVERSITY = re.compile(
    r"\b(?:university|college)(?=[-_ ]++(?:"
    + "|".join(sorted((*_PURPOSES, *_HOLDERS, "use", "uses", "usage", "purpose", "purposes"), key=len)[::-1])
    + r")\b)",
    re.IGNORECASE,
)
_RESTRICTING_PATTERN = (
    rf"\b(?:{'|'.join(_PURPOSES)})\b(?![-_ ]{_DATA_PART})|{_NON_PROFIT_PATTERN}|{_UNIVERSITY.pattern}"
)
# "commercial use prohibited", "commercial use is not allowed": a forbidding word after "commercial"
# in a clause (up to a `;` or the line's end: "commercial use permitted; modifications not allowed"
# forbids something else), found in two steps, as `only` after a restricting word, and for the same
# reason. "not prohibited" does not forbid. "Redistributing it commercially is prohibited" says it
# too; "commercials" (advertisements) does not.
_COMMERCIAL_WORD = re.compile(rf"\b{_COMMERCIAL_SPELLING}(ly)?\b", re.IGNORECASE)
_FORBIDDING = re.compile(
    r"(?<!\bnot[-_ ])\b(prohibited|forbidden|banned)\b|\bnot[-_ ](allowed|permitted)\b", re.IGNORECASE
)
# A name is non-commercial when _NAMED_PATTERN matches it, or an `only` follows a restricting word
# on a line (or precedes one in a clause: _limited_to_a_purpose). Kept in parts for Python's
# backtracking engine: `{_RESTRICTING_PATTERN}.*\bonly\b` as one
# regex tried `.*\bonly\b` after every restricting word, so a licence of
# "research " repeated over a megabyte (a sidecar's field) took twenty minutes. The first such word
# of a line is enough: an `only` after a later one is after the first too (`.` stops at a line
# break, so per line).
_NAMED_NON_COMMERCIAL = re.compile(_NAMED_PATTERN, re.IGNORECASE)
_RESTRICTING_WORD = re.compile(_RESTRICTING_PATTERN, re.IGNORECASE)
_ONLY = re.compile(r"\bonly\b", re.IGNORECASE)
# A pair that names both uses and ends the value, as a grant ("Free for commercial and non-commercial
# use", "for both commercial and non-commercial purposes", "non-commercial or commercial use
# permitted") grants commercial use: its "non-commercial" is no limit (read as one, it barred the
# data). _both_uses reads such a pair as "commercial" alone before _NAMED_NON_COMMERCIAL; the other
# rules read the value as written. Not a pair that goes on ("commercial and non-commercial use: see
# LICENSE", "... users who obtain a licence", "... research"), nor one after any word but those that
# grant (_GRANTS_BEFORE_A_PAIR): "no commercial and non-commercial use", "not for commercial and
# ...", "Ask the authors for ..." and a second "non-commercial" ("non-commercial and non-commercial":
# "non" comes before the pair) are read as written, and bar.
_PAIRED_WITH = r"[-_ ]++(?:and/or|and|or|&|as[-_ ]well[-_ ]as)[-_ ]++"
_PAIR_TAIL = (
    r"(?:[-_ ]++(?:uses?|usage|purposes?|applications?|projects?))?"
    r"(?:[-_ ]++(?:(?:is|are)[-_ ]++)?(?:permitted|allowed|ok|welcome|granted))?"
)
_ENDS_A_GRANT = rf"(?={_PAIR_TAIL}[-_ ]*+\Z)"
_PAIR_TAIL_RE = re.compile(_PAIR_TAIL, re.IGNORECASE)
# The pair (group 1) and its tail: where it ends the value (_VALUE_ENDS), or goes on only to "under" a
# listed licence ("Free for commercial and non-commercial use under CC BY 4.0"), _both_uses reads it a
# grant; one that ends only its clause ("... use. Fee required.") is read as written
_BOTH_USES = re.compile(
    rf"((?<![a-z]){_COMMERCIAL_SPELLING}{_PAIRED_WITH}non[-_ ]?{_COMMERCIAL_SPELLING}"
    rf"|\bnon[-_ ]?{_COMMERCIAL_SPELLING}{_PAIRED_WITH}{_COMMERCIAL_SPELLING}){_PAIR_TAIL}",
    re.IGNORECASE,
)
_CLAUSE_ENDS = re.compile(r"[-_ ]*+")
# A pair ends the value where only spaces and a full stop (or "!") follow it: _pair_ends_value
_VALUE_ENDS = re.compile(r"[-_\s.!]*+")
_UNDER = re.compile(r"[-_ ]++under[-_ ]++(.+)", re.IGNORECASE | re.DOTALL)
# How far a listed licence's name may stand after a pair's "under", and a pair after a listed licence
# that leads its value ("MIT licence for ..."): bounded, so that each pair of a long value reads a few
# dozen characters
_UNDER_REACH = 80
# "Licensed under" (or "Released under", ...) before a listed licence that leads the value: a pair
# after it grants as one after the licence alone ("Licensed under MIT for commercial and non-commercial
# use" as "MIT licence for ..."; read as written, it barred)
_LICENSED_UNDER = re.compile(
    r"(?:licen[cs]ed|released|distributed|available|provided|published|shared)[-_ ]++under[-_ ]++",
    re.IGNORECASE,
)
_LEAD_REACH = 40
# "Free for production and non-production use" grants both, as the commercial pair does, and only
# where it ends its clause as that one does: "... by non-profits only", "production or non-production
# research use" go on to a limit (a lookbehind on "non-production" anywhere let them through)
_BOTH_PRODUCTION = re.compile(
    rf"(?<![a-z])production{_PAIRED_WITH}non[-_ ]?production{_ENDS_A_GRANT}", re.IGNORECASE
)
# A Unicode hyphen or dash after "non" ("non\u2011commercial", "Non\u2013commercial", as pasted from a
# web page), or a no-break space ("Non\u00a0commercial"): read as "-", which the patterns know;
# "non\u2011commercial" was no word of theirs
_NON_DASH = re.compile(
    r"(?<![a-z])(non)[\u2010-\u2015\u2212\ufe58\ufe63\uff0d\u00a0\u2007\u202f]", re.IGNORECASE
)
# "free for academic use", "for research purposes", "Research and educational use", "Intel Research
# Use License": a use granted for a restricting purpose, which leaves commercial use out. Read word
# by word (one pass, no backtracking: see _NAMED_NON_COMMERCIAL). Not "research use welcome": the
# purpose must follow "for", end the line, or name the licence.
_WORDS = re.compile(r"[a-z]+")
_NON_PROFIT = re.compile(_NON_PROFIT_PATTERN)
_PURPOSE_WORDS = frozenset(_PURPOSES)
_USE_WORDS = frozenset(("use", "uses", "usage", "purpose", "purposes"))
_LICENCE_WORDS = frozenset(("licence", "license", "agreement"))
# `only` (or "solely", "restricted to", ...) BEFORE a restricting purpose: "Only academic use
# permitted", "Use is limited to academic research", "Restricted to personal use", "Can only be used
# for research". Read as "academic use only" is, but word by word within a clause (up to a `;`, `,`,
# `.`, a bracket or the line's end) and bounded: the limiting word, at most _MAX_BETWEEN words of how a
# use is granted (_BETWEEN_WORDS: "be used for the purposes of"), a run of purpose words ("academic
# and research"), then the clause's end or a word saying it is a use, a purpose or who may use it
# (_AFTER_PURPOSE_WORDS). A purpose word naming a thing ("only the research code is included",
# "only personal names were removed", "only research papers", "only personal data removed") or a
# part of the data ("only the research split") is followed by that noun, so reads as a note.
# "restricted"/"limited"/"confined" count only before "to", "reserved" before "for" ("limited
# testing" says how much); a negation before the limiting word grants ("not limited to research",
# "not only for research", "isn't restricted to ...").
_LIMITING_WORDS = frozenset(("only", "solely", "exclusively", "strictly"))
_LIMITING_BEFORE = {"restricted": "to", "limited": "to", "confined": "to", "reserved": "for"}
_NEGATING_WORDS = frozenset(("not", "no", "never"))
# "isn't", "can't", "don’t" read as "is not" (_clause_words): a bare "t" word is also "Flan-T5" or
# "AT&T" ("Flan-T5 restricted to research" read as "not restricted", a grant)
_CONTRACTED_NOT = re.compile(r"n['\u2019]t\b")
# Words a negation may stand before the limiting word across ("not strictly limited", "not be
# restricted"), _NEGATION_REACH of them at most: a bounded look back keeps the reading linear.
_NEGATION_BRIDGE = _LIMITING_WORDS | {"be", "been", "being"}
_NEGATION_REACH = 2
_BETWEEN_WORDS = frozenset(
    (
        *("for", "to", "in", "within", "at", "by", "of", "the", "a", "an", "your", "their", "own"),
        *("be", "is", "are", "being", "use", "used", "uses", "usage", "using", "purpose", "purposes"),
        *("such", "as", "intended", "provided", "made", "available", "licensed", "licenced"),
        *("permitted", "allowed", "granted", "distributed", "released"),
    )
)
_MAX_BETWEEN = 6  # "be used for the purposes of": six
_AFTER_PURPOSE_WORDS = frozenset(
    (
        *_USE_WORDS,
        *_LICENCE_WORDS,
        *("only", "is", "are", "may", "can", "must", "permitted", "allowed", "granted", "authorised"),
        *("authorized", "institutions", "institution"),
        *("organisations", "organizations", "organisation", "organization", "community", "communities"),
        *("users", "user", "settings", "setting", "contexts", "context", "labs", "laboratories"),
        *("groups", "entities", "bodies", "projects", "activities", "work", "studies", "study"),
        *("applications", "environments"),
    )
)
# "Only for evaluation of models", "restricted to research at universities": a preposition after the
# run says where or of what the use is, but only where fillers lead to it ("for", "to"): right after
# the limiting word the purpose word is a noun being listed ("only testing of the English subset was
# done"), which is a note.
_AFTER_PURPOSE_PREPOSITIONS = frozenset(("of", "in", "at", "by", "on", "within"))
# How the data was made, just before the limiting word: then "by", "in", "at" name who made it or
# where ("annotated only by research groups", "collected only in research settings"), not a use (read
# as a limit, they barred the data). "for" still names a purpose: "collected only for research".
_MADE_WORDS = frozenset(
    (
        *("annotated", "collected", "gathered", "recorded", "labelled", "labeled", "written"),
        *("authored", "created", "produced", "generated", "curated", "compiled", "transcribed"),
        *("translated", "reviewed", "validated", "verified", "sourced", "crawled", "scraped"),
    )
)
_MADE_BY = frozenset(("by", "in", "at", "within"))
# How far _made_by_before looks back, and the words of a run (or an article) it reads back across
_MADE_LOOK_BACK = 80
_RUN_BEFORE = _PURPOSE_WORDS | {"and", "or", "the", "a", "an"}
_CLAUSE_BREAK = re.compile(r"[;,.()\[\]!?]")
_CLAUSE_BREAK_KEPT = re.compile(r"([;,.()\[\]!?])")  # the same, each break kept (re.split)
# A note on a licence is set off by these too: "CC BY 4.0 / personal use", "MIT: academic use", "MIT
# + research use" (a "." before a digit is a version's: "CC BY 4.0 research use" is one clause, read as
# before; a "+" after a space or before a letter, not an id's "GPL-2.0+": "MIT+research use"); "MIT &
# research use" (but "commercial & research use" names both uses: _purpose_clause)
_PURPOSE_CLAUSE_BREAK = re.compile(r"([;,()\[\]!?/:|&\u2013\u2014]|\.(?!\d)|\s-\s|\s\+|\+(?=[A-Za-z]))")
# A field's name before a colon says what the data is about, not what it may be used for: "Genre:
# academic", "Topic: research", "Domain: education" (each read as a purpose note, barred)
_LABELS = frozenset(
    (
        *("genre", "genres", "topic", "topics", "domain", "domains", "subject", "subjects", "category"),
        *("categories", "field", "fields", "tag", "tags", "keywords", "register", "style", "type"),
    )
)
# A use granted for a restricting purpose that ends the clause, without the use word _for_a_purpose
# reads after it: "Free for research", "Freely available for academic research", "Intended for
# research", "For academic research", "Permission is granted to use this dataset for research", "Use
# for research" (after "annotated by research groups only,": who made it, then the use). A
# granting word (or a clause's first "for") leads to it across fillers with a "for" among them; the
# purpose run ends the clause or is followed by a use word or "only". Not "provided by researchers",
# "released to the research community" (no "for": who made it, who it is shared with), "for research
# and development" (the run does not end there).
_GRANTING_HEADS = frozenset(
    (
        *("free", "freely", "available", "intended", "granted", "provided", "distributed", "released"),
        *("licensed", "licenced", "permitted", "allowed", "usable"),
        # the use (or the licence) itself: "use for research", "may be used for research", "MIT
        # licence for research" grant it for the purpose as "free for research" does
        *("use", "used", "uses", "licence", "license"),
    )
)
# The use itself as a head says what the data is for, unless it is a condition ("Please cite us if you
# use it for research", "cite when used for research") or says how the data has been used ("Widely used
# for research"): each of these barred once "use" became a head, where it had read unlisted
_USE_HEADS = frozenset(("use", "used", "uses"))
_CONDITIONS = frozenset(("if", "when", "whenever", "once"))
_TOLD_HOW = frozenset(("widely", "commonly", "often", "frequently", "originally", "previously"))
# What may follow who holds a purpose (or the run itself) and still end the grant: where ("worldwide"),
# how ("upon request"), or more people of a purpose ("and universities"), _HOLDER_TAIL_REACH words at
# most. Not "and companies", "and the public": a commercial recipient (or anyone) is no limit.
_HOLDER_TAIL = (
    _PURPOSE_WORDS | _HOLDERS | {"only", "worldwide", "globally", "upon", "on", "request", "and", "or"}
)
_HOLDER_TAIL_REACH = 4
# The data, as the word-by-word readers pass over it: "free for this dataset ...", "not use the data ..."
_THE_DATA = ("this", "these", "that", "it", "data", "dataset", "datasets", "corpus")
_GRANT_FILLERS = _BETWEEN_WORDS | frozenset(("free", "freely", "charge", *_THE_DATA))
# The words a pair (_BOTH_USES, _BOTH_PRODUCTION) may follow in its clause and still grant both uses:
# "Free of charge for ...", "Can be used for ...", "Suitable for both ...". Any other word may set
# the uses apart or ask for leave ("Separate licences for ...", "Fees apply for ...", "Ask the authors
# for commercial and non-commercial use"): a list of such words (licence, fee, contact) missed
# "ask", "email", "apply" and any other, and each read unlisted where it had barred.
_GRANTS_BEFORE_A_PAIR = _GRANT_FILLERS | frozenset(
    ("both", "can", "may", "usable", "suitable", "any", "all", "open", "ok", "and", "or")
)
# A purpose run that ends its clause at a comma, after which the list of who may have the data goes on
# with a commercial recipient: "Available to researchers, companies and the public", "Free for
# researchers, industry and individuals" (the comma ended the clause after "researchers", which
# barred the data). Only a list: the clauses after the comma must be of _LIST_WORDS alone, so "...,
# not companies", "..., excluding companies", "..., free of charge" and "..., companies and the
# public for research purposes" read as before. Without a commercial recipient ("researchers,
# students and teachers") the purpose still ends the grant.
_OPEN_RECIPIENTS = frozenset(
    (
        *("companies", "company", "businesses", "business", "industry", "industries", "enterprises"),
        *("startups", "corporations", "firms", "public", "everyone", "everybody", "anyone", "anybody"),
        "commercial",
    )
)
_LIST_WORDS = (
    _OPEN_RECIPIENTS
    | _PURPOSE_WORDS
    | frozenset(
        (
            *("and", "or", "the", "a", "an", "general", "all", "any", "users", "user", "entities"),
            *("organisations", "organizations", "individuals", "people", "students", "educators"),
            *("teachers", "universities", "institutions", "developers", "government", "governments"),
        )
    )
)
# "You may not use the material for commercial purposes" (CC BY-NC's own legal code), "cannot be
# used commercially", "does not allow commercial use", "It is forbidden to use this data for
# commercial purposes": a negation (or a forbidding word) that reaches "commercial" across a few
# words of how a use is put (_NEGATED_FILLERS); any other word stops it: "does not restrict
# commercial use", "not only for research but for commercial use", "no permission needed for ...",
# "whether or not commercial" (both offered). "can't", "don't": _clause_words reads them as "not".
# "..., nor for commercial use", "Neither for commercial use nor ..."
_NEGATED_HEADS = frozenset(("not", "cannot", "never", "nor", "neither"))
_FORBIDDING_HEADS = frozenset(("prohibited", "forbidden", "banned"))
_NEGATED_FILLERS = frozenset(
    (
        *_THE_DATA,
        *("be", "used", "use", "using", "for", "any", "the", "those", "its"),
        *("material", "materials", "work", "content"),
        *("them", "in", "a", "an", "to", "of", "or", "and", "otherwise", "allow", "allows", "permit"),
        *("permits", "authorise", "authorize", "redistributed", "distributed", "shared", "sold"),
        *("licensed", "licenced", "permitted"),  # "not licensed (or permitted) for commercial use"
    )
)
# "This is not a commercial product": what the thing is (_describes), not a use denied
_COPULAS = frozenset(("is", "are", "was", "were"))
_DESCRIBED_NOUNS = frozenset(
    (
        *("product", "products", "project", "entity", "company", "organisation", "organization"),
        *("enterprise", "venture", "service", "offering", "tool", "software"),
    )
)
_MAX_NEGATED = 8  # "not be redistributed or used for any commercial": seven
# "commercial use requires permission", "commercial licensing available", "commercial use: contact
# us", "contact the authors for commercial use": the terms as written leave commercial use out (a
# separate licence, once granted, is what the `licence:` should then name). The words must follow
# "commercial" directly, and what is required must be a permission: "commercial use allowed, no
# attribution required" and "commercial use requires attribution" stay as they were.
# A dash or "(" separates as a comma does: "commercial use \u2014 contact us", "commercial use (contact".
_SEP = r"[-_ :,(\u2013\u2014]++"  # possessive (Python 3.11): a run is never given back, char by char
# A permission may be someone's ("the authors' permission") or paid for ("a paid licence", "a fee",
# "royalties": commercial use is then left to a separate, paid agreement); a licence notice or text
# is a credit, not a permission ("commercial use with a licence notice").
_PERMISSION_ADJECTIVES = "a|an|the|our|prior|written|explicit|express|separate|additional|paid|[a-z]+'s?"
_PERMISSION_NOUN = (
    r"(?:permission|licen[cs](?:e|ing)|agreement|approval|consent|authori[sz]ation|contract"
    r"|fee|payment|royalt(?:y|ie))s?"
)
_PERMISSION = (
    # "a commercial licence": one "commercial", last (a run of them from every "commercial" of a
    # value of "commercial " repeated is quadratic)
    rf"(?:(?:{_PERMISSION_ADJECTIVES}){_SEP})*(?:commercial{_SEP})?{_PERMISSION_NOUN}"
    rf"(?!{_SEP}(?:notices?|text|files?|copy|header|attribution|credit)\b)"
)
# Ways to say "contact": "get in touch for commercial use", "email us for commercial licensing".
_CONTACT_PATTERN = rf"contact|get{_SEP}in{_SEP}touch|e-?mail|reach{_SEP}out|write{_SEP}to|[ei]nquire"

# No granting word before "for commercial": "free for commercial use, contact us with questions"
# grants it (the contact is for questions). Lookbehinds, fixed width: one per word.
_GRANTING = ("free", "ok", "allowed", "permitted")
_NOT_GRANTED_FOR = "".join(rf"(?<!\b{word}[-_ ]for[-_ ])" for word in _GRANTING)  # before "commercial"
_NOT_GRANTED = "".join(rf"(?<!\b{word}[-_ ])" for word in _GRANTING)  # before "for commercial"
# "with", except in "rights with the license" at the value's end (_NEEDS_PERMISSION's comment says why)
_WITH_NAMED = rf"with(?!(?<=\brights[-_ ]with){_SEP}the{_SEP}{_LICENCE_WORD}[\s.)]*+$)"
# Not after "no": "no commercial licence required" grants it (_NAMED_PATTERN bars any other "no
# commercial ..." that would match here).
_NEEDS_PERMISSION = re.compile(
    rf"{_NOT_GRANTED_FOR}(?<!\bno[-_ ])\bcommercial(ly)?{_SEP}"
    rf"(?:(?:use|usage|purposes?|redistribution|distribution|exploitation|applications?|users?"
    # "For commercial licensing, contact us", "commercial rights: contact ...": a contact after the
    # licence's own word asks for one, as "contact us for commercial licensing" does (_FOR_COMMERCIAL)
    rf"|{_LICENCE_WORD}|rights|terms){_SEP}(?:(?:inquiries|enquiries){_SEP})?)?"
    rf"(?:(?:is|are|only|may{_SEP}be){_SEP})?"
    # "commercial rights with the license" (the licence named, at the value's end) says they come
    # with it, not that another is needed; "only with the license", "with a license" need one, and
    # "commercial use with the license" may mean a licence to be bought: kept barred, as is a clause
    # after it ("; contact us", "; license fee applies"), which may say how that licence is had
    rf"(?:(?:requires?|required|needs?|subject{_SEP}to|only{_SEP}with|{_WITH_NAMED}|by){_SEP}{_PERMISSION}"
    rf"|{_PERMISSION}{_SEP}(?:(?:is|are){_SEP})?(?:required|needed|necessary)"  # "licence required"
    rf"|upon{_SEP}request|on{_SEP}request|(?:please{_SEP})?(?:{_CONTACT_PATTERN})|by{_SEP}arrangement)\b"
    rf"|(?<!\bno[-_ ])\bcommercial{_SEP}{_LICENCE_WORD}{_SEP}(?:(?:is|are){_SEP})?"
    rf"(?:available|on{_SEP}request|required|needed|necessary)\b",
    re.IGNORECASE,
)
# The same, the permission first: "paid licence required for commercial use", "a separate license is
# required for commercial use". Found from the permission's word on (linear: no adjectives run, which
# from every word of a long value would be quadratic); a "no" before it ("No permission required for
# commercial use", "no prior written permission ...") grants it: _required_for_commercial reads it.
_REQUIRED_FOR_COMMERCIAL = re.compile(
    rf"\b{_PERMISSION_NOUN}{_SEP}(?:(?:is|are){_SEP})?(?:required|needed|necessary){_SEP}"
    rf"(?:for|before){_SEP}(?:any{_SEP})?commercial(?:ly)?\b",
    re.IGNORECASE,
)
# That "no" and what may stand between it and the permission, in one sentence: "no prior written
# permission", "no licence fee", "no fee or permission", "without any fee", "no author's permission".
# A "." ends the sentence: "free without a licence. A licence is required for commercial use" requires
# one. Read over a bounded look-back (_required_for_commercial), to its end (\Z).
_NO_BEFORE_PERMISSION = re.compile(
    rf"\b(?:no|without)(?:[-_\s,]++(?:any|or|and|commercial|{_PERMISSION_ADJECTIVES}|{_PERMISSION_NOUN}))*"
    r"[-_\s,]++\Z",
    re.IGNORECASE,
)
# "a copy of the licence is required for commercial use": a credit, as "a licence copy" is (_PERMISSION)
_CREDIT_BEFORE_PERMISSION = re.compile(
    r"\b(?:copy|copies|text|notice|url|link)[-_\s]++of(?:[-_\s]++(?:the|this|a|an|our))?[-_\s]++\Z",
    re.IGNORECASE,
)
_CONTACT = re.compile(rf"\b(?:{_CONTACT_PATTERN})\b", re.IGNORECASE)
# "email" as a noun, what was done to the data: "email addresses removed for commercial use" asks for
# no contact (read as one, it barred the data). Only with such a verb: "email address for commercial
# licensing: ..." and "email: x@example.org for commercial use" ask for one.
_EMAIL_REMOVED = re.compile(
    r"e-?mail(?:[-_ ](?:address(?:es)?|headers?))?[-_ ]"
    r"(?:(?:is|are|was|were|has[-_ ]been|have[-_ ]been)[-_ ])?"
    r"(?:removed|redacted|deleted|stripped|scrubbed|masked|anonymi[sz]ed|pseudonymi[sz]ed|filtered|dropped)"
    r"\b",
    re.IGNORECASE,
)
# Dual licensing: an open licence that allows commercial use, beside an offer of a commercial licence
# ("GPL-3.0; commercial licenses available", "AGPL-3.0 or commercial"). The offer is for those who
# want other terms (no copyleft); the work is usable under the open licence, so the value is not
# barred: it reads as unlisted (free text, not an id on the list: a `commercial_reason` says that the
# open licence was read). Only the whole value is read so: an open licence's id, then nothing but the
# offer ("MIT; commercial use requires permission" restricts, and stays barred; so does the offer
# alone, "contact us for commercial licensing"). Open: on COMMERCIAL_OK, or the GNU licences.
_GNU = re.compile(r"[al]?gpl(?:-\d(?:\.\d)?(?:-only|-or-later)?\+?)?", re.IGNORECASE)
# _SEP's separators, and what may stand between the id and its offer: "GPL-3.0; ...", "MIT / ..."
_OFFER_SEP = r"[-\s:,;(/\u2013\u2014]++"
# "contact us", "please email the authors": a request to be contacted by the licence's makers
_CONTACT_US = rf"(?:please{_OFFER_SEP})?(?:{_CONTACT_PATTERN}){_OFFER_SEP}(?:us|the{_OFFER_SEP}authors?)"
_OFFERED = rf"(?:available(?:{_OFFER_SEP}(?:up)?on{_OFFER_SEP}request)?|(?:up)?on{_OFFER_SEP}request)"
_COMMERCIAL_OFFER = re.compile(
    # A full stop may end the licence's name before its offer: "MIT. Commercial licenses available"
    # says what "MIT; commercial licenses available" does (_dual_licensed leaves the stop to this).
    r"\.?(?:"
    # "; for commercial licensing, contact us", "/ commercial licenses: email us" (first: the next
    # alternative would take "; commercial licenses" and leave the contact unread)
    rf"{_OFFER_SEP}(?:for{_OFFER_SEP})?(?:a{_OFFER_SEP})?commercial{_OFFER_SEP}{_LICENCE_WORD}"
    rf"(?:{_OFFER_SEP}(?:inquiries|enquiries))?{_OFFER_SEP}{_CONTACT_US}"
    # "or commercial", "/ a commercial license", "; commercial licenses are also available"
    rf"|{_OFFER_SEP}(?:(?:or|and){_OFFER_SEP})?(?:(?:a|an|separate|also){_OFFER_SEP})*commercial"
    rf"(?:{_OFFER_SEP}{_LICENCE_WORD}(?:{_OFFER_SEP}(?:(?:is|are|also){_OFFER_SEP})*{_OFFERED})?)?"
    # "; contact us for commercial licensing"
    rf"|{_OFFER_SEP}{_CONTACT_US}"
    rf"{_OFFER_SEP}for{_OFFER_SEP}(?:a{_OFFER_SEP})?commercial{_OFFER_SEP}{_LICENCE_WORD})",
    re.IGNORECASE,
)
_OFFER_END = re.compile(r"[\s.)]*")  # after the offer: a full stop, the ")" of "MIT (or commercial)"
_LEADING_ID = re.compile(r"[a-z0-9.+-]+", re.IGNORECASE)  # an SPDX id's characters ("GPL-2.0+")
# A word of a spelled-out name: a run up to one of the offer's separators ("MIT", "License", "(MIT)")
_NAME_WORD = re.compile(r"[^-\s:,;(/\u2013\u2014]++")
_SPELLED_WORDS = max(len(_NAME_WORD.findall(name)) for name in _SPELLED_OUT)
# Wordings that grant commercial use beside a restricted purpose: "free for research and commercial
# use", "commercial use allowed", "free for commercial use".
_GRANTS_COMMERCIAL = re.compile(
    r"\b(?:and|or)[-_ ]commercial\b"
    r"|\bcommercial(?:ly)?[-_ ](?:(?:use|usage)[-_ ])?(?:is[-_ ])?(?:allowed|permitted|ok|welcome|granted)\b"
    rf"|\b(?:{'|'.join(_GRANTING)})[-_ ]for[-_ ]commercial\b",
    re.IGNORECASE,
)
# What the contact is for must be the use or its licence: not "contact us for commercial support".
_FOR_COMMERCIAL = re.compile(
    rf"{_NOT_GRANTED}\b(?:for|about|regarding)[-_ ]commercial[-_ ]"
    rf"(?:use|usage|purposes?|{_LICENCE_WORD}|rights|terms)\b",
    re.IGNORECASE,
)


def _name_non_commercial(licence: str) -> bool:
    """True when the licence's name says it forbids commercial use. Invisible characters are dropped
    first: a soft hyphen in "Non\u00adcommercial" (pasted from a web page) hid the word."""
    name = _NON_DASH.sub(r"\1-", visible(licence)).strip()
    if _NAMED_NON_COMMERCIAL.search(_both_uses(name)) or name.lower() in NON_COMMERCIAL_IDS:
        return True
    if _NON_COMMERCIAL_NAMES.fullmatch(_spelled(name)):
        return True
    if _dual_licensed(name):
        return False
    if _NEEDS_PERMISSION.search(name):
        return True
    # A value that grants commercial use says more than _for_a_purpose reads, on any of its lines:
    # "free for personal use\ncommercial use allowed" as it does on one line. One that only names it
    # ("Free for academic use. Commercial users must obtain a licence") is read as restricted.
    grants_commercial = _GRANTS_COMMERCIAL.search(name) is not None
    for line in name.split("\n"):
        if _only_after_a_purpose(line):
            return True
        if _limited_to_a_purpose(line):
            return True
        if not grants_commercial and (
            _for_a_purpose(line) or _granted_for_a_purpose(line) or _purpose_clause(line)
        ):
            return True
        if _negated_commercial_use(line):
            return True
        for clause in line.split(";"):
            word = _COMMERCIAL_WORD.search(clause)
            if word and _FORBIDDING.search(clause, word.end()):
                return True
            if _asks_contact(clause):
                return True
            if _required_for_commercial(clause):
                return True
    return False


def _both_uses(name: str) -> str:
    """The value with each pair that grants both uses (_BOTH_USES: at the value's end, or "under" a
    listed licence at it) read as "commercial" (a production pair, _BOTH_PRODUCTION, as "production")
    where only words that grant come before it in its clause (_GRANTS_BEFORE_A_PAIR), or after a
    listed licence that leads the value ("MIT licence for ...": _pair_led). Linear: each clause is
    read once, and each pair a bounded few characters beyond it (or the spaces and stops after it)."""
    parts = _CLAUSE_BREAK_KEPT.split(name)
    leads = list(_listed_name_ends(name))
    under = _LICENSED_UNDER.match(name)  # "Licensed under MIT for ...": the licence leads it too
    if under is not None:
        leads += [under.end() + end for end in _listed_name_ends(name[under.end() :])]
    start = 0  # where parts[at] starts in the value
    for at, part in enumerate(parts):
        if at % 2 == 0:
            parts[at] = _granting_pair(name, start, part, leads)
            pair = _BOTH_PRODUCTION.search(parts[at])
            before = _WORDS.findall(parts[at][: pair.start()].lower()) if pair is not None else ()
            if pair is not None and _GRANTS_BEFORE_A_PAIR.issuperset(before):
                # the pair ends its clause, read from its end: a commercial pair before it is rewritten
                ends = start + len(part) - len(parts[at]) + _PAIR_TAIL_RE.match(parts[at], pair.end()).end()
                if _pair_ends_value(name, ends):
                    parts[at] = parts[at][: pair.start()] + "production" + parts[at][pair.end() :]
        start += len(part)
    return "".join(parts)


def _granting_pair(name: str, start: int, clause: str, leads: list[int]) -> str:
    """The clause (at `start` in the value) with its first pair that grants both uses read as
    "commercial": the pair must end the value, or go on only to "under" a listed licence
    (_pair_ends, _pair_ends_value), and follow only words that grant, in its clause or after a listed
    licence that leads the value (_pair_led)."""
    for pair in _BOTH_USES.finditer(clause):
        if not _pair_ends(name, start, clause, pair.end()):
            continue
        led = _GRANTS_BEFORE_A_PAIR.issuperset(_WORDS.findall(clause[: pair.start()].lower()))
        if (led or _pair_led(name, start + pair.start(), leads)) and _pair_ends_value(
            name, start + pair.end()
        ):
            return clause[: pair.start()] + "commercial" + clause[pair.end(1) :]
    return clause


def _pair_ends(name: str, start: int, clause: str, end: int) -> bool:
    """True when the pair and its tail (ending at `end` in the clause, which starts at `start` in the
    value) end their clause, or all that follows in the value is "under" a listed licence: "... use
    under CC BY 4.0" (the "." of "4.0" is a clause break). Not "under CC BY-NC 4.0", "under a separate
    licence". Read in place, not sliced: a clause of many pairs reads each a few characters on."""
    return _CLAUSE_ENDS.fullmatch(clause, end) is not None or _under_listed(name, start + end)


def _under_listed(name: str, end: int) -> bool:
    """True when all that follows `end` in the value is "under" a listed licence."""
    under = _UNDER.fullmatch(name, end) if len(name) - end <= _UNDER_REACH else None
    return under is not None and listed_id(under.group(1).strip().removesuffix(".").strip()) in COMMERCIAL_OK


def _pair_ends_value(name: str, end: int) -> bool:
    """True when the pair and its tail (ending at `end` in the value) end the value, but for a full
    stop, or go on only "under" a listed licence. A pair that ended only its clause let what follows
    be read as if the pair said "commercial" alone: "MIT licence for commercial and non-commercial
    use. Fee required.", "Free for commercial and non-commercial use (ask the authors)", "..., except
    by companies" read unlisted, where the pair's "non-commercial" bars them."""
    return _VALUE_ENDS.fullmatch(name, end) is not None or _under_listed(name, end)


def _pair_led(name: str, start: int, leads: list[int]) -> bool:
    """True when only words that grant come between a listed licence leading the value (ending at one
    of `leads`) and the pair (at `start`), a licence's own word among them: "MIT licence for", "MIT:
    free for". Not "MIT licence, ask for", "No MIT ..."."""
    words = _GRANTS_BEFORE_A_PAIR | _LICENCE_WORDS
    return any(
        0 <= start - lead <= _LEAD_REACH and words.issuperset(_WORDS.findall(name[lead:start].lower()))
        for lead in leads
    )


def _only_after_a_purpose(line: str) -> bool:
    """True when an `only` follows a restricting word on the line: "research use only". The first
    such word decides (an `only` after a later one is after it too), unless it says who made the data
    or where and the `only` is in its clause: "annotated by research groups only" is a note
    (_made_by_before), "annotated by researchers; use only ..." reads as before."""
    only = brk = -1  # where the next `only` and clause break start: found again once passed (linear)
    for word in _RESTRICTING_WORD.finditer(line):
        if only < word.end():
            found = _ONLY.search(line, word.end())
            if found is None:
                return False
            only = found.start()
        if brk < word.end():
            found = _CLAUSE_BREAK.search(line, word.end())
            brk = len(line) if found is None else found.start()
        # made-by's own `only`: the next one in the same clause ("by research groups only; ...")
        if not (brk > only and _made_by_before(line, word.start())):
            return True
    return False


def _made_by_before(line: str, at: int) -> bool:
    """True when the purpose word at `at` follows how the data was made and "by", "in", "at":
    "annotated by (academic) research groups", "collected in research settings" (_MADE_WORDS). Not
    after "be": "may be translated by research institutions only" says who may do it, a use. Read
    over a bounded look-back, so each purpose word of a long value reads a few dozen characters."""
    words = _WORDS.findall(line[max(0, at - _MADE_LOOK_BACK) : at].lower())
    while words and words[-1] in _RUN_BEFORE:  # the run's earlier words: "by academic research"
        words.pop()
    return len(words) >= 2 and words[-1] in _MADE_BY and words[-2] in _MADE_WORDS and words[-3:-2] != ["be"]


def _dual_licensed(name: str) -> bool:
    """True when the value is an open licence's id, or a listed licence's spelled-out name ("MIT
    License", "Apache License, Version 2.0"), and an offer of a commercial licence beside it ("GPL-3.0;
    commercial licenses available", "AGPL-3.0 or commercial"): see _COMMERCIAL_OFFER."""
    return any(_offered(name, end) for end in _listed_name_ends(name))


def _listed_name_ends(name: str) -> Iterator[int]:
    """Where an open licence's id (on COMMERCIAL_OK, or a GNU licence) or a listed licence's
    spelled-out name that leads the value may end: "MIT" of "MIT licence for ...", "Apache 2.0"."""
    match = _LEADING_ID.match(name)
    if match is None:
        return
    end = _before_full_stop(name, match.end())
    key = name[:end].lower()
    if listed_id(key) in COMMERCIAL_OK or _GNU.fullmatch(key) is not None:
        yield end
    # A spelled-out name ends after one of its first few words (_SPELLED_WORDS at most): each is tried
    # as its end, so that the name's own words ("License") are not read as what follows it
    for word in itertools.islice(_NAME_WORD.finditer(name), _SPELLED_WORDS):
        end = _before_full_stop(name, word.end())
        if _spelled(name[:end]) in _SPELLED_OUT:
            yield end


def _before_full_stop(name: str, end: int) -> int:
    """Where the name ending at `end` ends without the full stop a sentence put after it ("MIT."):
    an id's characters and a name's word take the "." in, and "mit." is no listed licence."""
    return end - 1 if name[end - 1 : end] == "." else end


def _offered(name: str, at: int) -> bool:
    """True when all that follows `at` in the value is an offer of a commercial licence."""
    offer = _COMMERCIAL_OFFER.match(name, at)
    return offer is not None and _OFFER_END.fullmatch(name, offer.end()) is not None


def _asks_contact(clause: str) -> bool:
    """True when the clause asks to be contacted about commercial use ("contact us for commercial
    use"), the first contact word that is no noun for what was removed (_EMAIL_REMOVED) deciding, as
    the first restricting word does for an `only`: a "for commercial" after a later one is after it."""
    for word in _CONTACT.finditer(clause):
        if _EMAIL_REMOVED.match(clause, word.start()) is None:
            return _FOR_COMMERCIAL.search(clause, word.end()) is not None
    return False


def _required_for_commercial(clause: str) -> bool:
    """True when the clause says a permission (or a fee) is required for commercial use, not that
    none is, nor a credit: "licence required for commercial use", not "no licence required for
    commercial use" or "a copy of the licence is required for commercial use"."""
    for match in _REQUIRED_FOR_COMMERCIAL.finditer(clause):
        # the text just before it: a bounded look-back, so each match reads a few dozen characters
        before = clause[max(0, match.start() - 80) : match.start()]
        if _NO_BEFORE_PERMISSION.search(before) is None and _CREDIT_BEFORE_PERMISSION.search(before) is None:
            return True
    return False


def _clause_words(clause: str) -> list[str]:
    """The clause's words, lower case, as the word-by-word readers take them: "non-profit" one word
    (_NON_PROFIT), "n't" as "not" (_CONTRACTED_NOT)."""
    return _WORDS.findall(
        _NON_PROFIT.sub("nonprofit", _CONTRACTED_NOT.sub(" not", _academic(clause.lower())))
    )


def _academic(text: str) -> str:
    """The text with "university" before a purpose, who holds one or a use read as "academic"
    (_UNIVERSITY): "university staff" is academic staff."""
    return _UNIVERSITY.sub("academic", text)


def _limited_to_a_purpose(line: str) -> bool:
    """True when a clause of the line limits use to a restricting purpose, the limiting word first:
    "Only academic use permitted", "Restricted to personal use" (_LIMITING_WORDS says how it is read).
    Linear: each limiting word reads on to the next word that is neither a filler nor a purpose."""
    for clause in _CLAUSE_BREAK.split(line):
        words = _clause_words(clause)
        for at, word in enumerate(words):
            if _negated(words, at):
                continue
            if word in _LIMITING_WORDS:
                start = at + 1
                if _says_who_made(words, at):
                    continue
            elif word in _LIMITING_BEFORE and words[at + 1 : at + 2] == [_LIMITING_BEFORE[word]]:
                start = at + 2
            else:
                continue
            if _purpose_follows(words, start):
                return True
    return False


def _granted_for_a_purpose(line: str) -> bool:
    """True when a clause of the line grants use for a restricting purpose that ends it: "Free for
    research" (_GRANTING_HEADS says how it is read). Linear: each head reads on a bounded few words."""
    parts = _CLAUSE_BREAK_KEPT.split(line)  # clauses, each followed by its break
    clauses = [_clause_words(clause) for clause in parts[::2]]
    listed = _open_lists(clauses, parts[1::2])
    for words, open_list in zip(clauses, listed, strict=True):
        # an "if" or "when" seen in the clause: a use after it is a condition, but for "only if",
        # which limits the use to it ("Allowed only when used for research")
        condition = False
        for at, word in enumerate(words):
            if word in _CONDITIONS:
                condition = at == 0 or words[at - 1] != "only"
            head = (word in _GRANTING_HEADS and not _negated(words, at)) or (at == 0 and word == "for")
            if head and word in _USE_HEADS and (condition or (at > 0 and words[at - 1] in _TOLD_HOW)):
                continue
            if head and _purpose_ends(words, at, open_list):
                return True
    return False


def _open_lists(clauses: list[list[str]], breaks: list[str]) -> list[bool]:
    """For each clause (its words), whether a comma after it goes on with a list of who may have the
    data that names a commercial recipient (_OPEN_RECIPIENTS). Read from the end, each clause once."""
    listed = [False] * len(clauses)
    for at in range(len(clauses) - 2, -1, -1):
        words = clauses[at + 1]
        if breaks[at] == "," and words and all(word in _LIST_WORDS for word in words):
            listed[at] = listed[at + 1] or any(word in _OPEN_RECIPIENTS for word in words)
    return listed


def _purpose_ends(words: list[str], head: int, open_list: bool) -> bool:
    """True when, after words[head], fillers with a "for" among them (or the head itself "for") lead to
    a run of purpose words that ends the clause or is followed by a use word or "only"; or fillers with
    a "to" among them lead to one that ends the clause: "Available to academic researchers" (who may
    have it), not "released to the research community" (who it was shared with). A run and who holds
    it (_HOLDERS: "academic institutions") ending the clause ends it as the run alone does. A run that
    ends the clause where a list naming a commercial recipient goes on after it (`open_list`) ends no
    grant."""
    at, end = head + 1, min(len(words), head + 1 + _MAX_BETWEEN)
    led, to = words[head] == "for", False
    while at < end and words[at] in _GRANT_FILLERS:
        led = led or words[at] == "for"
        to = to or words[at] == "to"
        at += 1
    if not (led or to) or at >= len(words) or words[at] not in _PURPOSE_WORDS:
        return False
    end = _run_end(words, at)
    after = words[end] if end < len(words) else None
    # who holds the purpose, ending the clause or followed only by _HOLDER_TAIL ("only", "worldwide",
    # "upon request", "and universities"): as if the run had ended it. Sliced only when short, so each
    # head reads a few words
    rest = end + 1 if after in _HOLDERS else end
    tail = words[rest:] if len(words) - rest <= _HOLDER_TAIL_REACH else ["..."]
    held = _HOLDER_TAIL.issuperset(tail) and tail[-1:] not in (["and"], ["or"])
    return ((after is None or held) and not open_list) or (led and (after in _USE_WORDS or after == "only"))


def _negated_commercial_use(line: str) -> bool:
    """True when a clause of the line denies commercial use: a negation or forbidding word that
    reaches "commercial(ly)" across at most _MAX_NEGATED of _NEGATED_FILLERS. "not prohibited" and the
    like are no denial. Linear: each head reads a bounded few words on."""
    for clause in _CLAUSE_BREAK.split(line):
        words = _clause_words(clause)
        for at, word in enumerate(words):
            if word in _FORBIDDING_HEADS:
                if _negated(words, at):
                    continue
            elif word not in _NEGATED_HEADS or words[max(0, at - 2) : at] == ["whether", "or"]:
                continue
            if _reaches_commercial(words, at):
                return True
    return False


def _reaches_commercial(words: list[str], at: int) -> bool:
    """True when the negation at words[at] reaches "commercial(ly)" across _NEGATED_FILLERS within
    _MAX_NEGATED words. What the thing is ("not a commercial product", _describes) is passed over,
    not an end: the negation still reaches a use after it ("not a commercial product or for
    commercial use")."""
    later, stop = at + 1, min(len(words), at + 1 + _MAX_NEGATED)
    described = False  # once it is, more of what it is ("product or service") reads on to a use
    while later < stop:
        if _COMMERCIAL_WORD.fullmatch(words[later]):
            if not _describes(words, at, later):
                return True
            later += 2  # the noun (_DESCRIBED_NOUNS) after it
            described = True
        elif words[later] not in _NEGATED_FILLERS and not (described and words[later] in _DESCRIBED_NOUNS):
            return False
        else:
            later += 1
    return False


def _describes(words: list[str], at: int, commercial: int) -> bool:
    """True when the negation at words[at] says what the thing is, not how it may be used: "This is
    not a commercial product" (a copula, "not a", "commercial" and a noun of _DESCRIBED_NOUNS)."""
    return (
        at > 0
        and words[at - 1] in _COPULAS
        and words[at] == "not"
        and commercial == at + 2
        and words[at + 1] in ("a", "an")
        and commercial + 1 < len(words)
        and words[commercial + 1] in _DESCRIBED_NOUNS
    )


def _says_who_made(words: list[str], at: int) -> bool:
    """True when the limiting word words[at] says who made the data or where, not who may use it:
    "annotated only by research groups" (_MADE_WORDS). Not after "be": "may be translated only by
    research institutions", "can be collected only in research settings" say who may do it, a use."""
    return (
        0 < at < len(words) - 1
        and words[at - 1] in _MADE_WORDS
        and words[at + 1] in _MADE_BY
        and words[at - 2 : at - 1] != ["be"]
    )


def _negated(words: list[str], at: int) -> bool:
    """True when a negation stands before words[at], across at most _NEGATION_REACH words that only
    say how the limit is put: "not strictly limited to research", "shall not be restricted to ..."
    grant, as "not limited to" does (read as limits, they barred the data)."""
    for back in range(at - 1, max(-1, at - 2 - _NEGATION_REACH), -1):
        if words[back] in _NEGATING_WORDS:
            return True
        if words[back] not in _NEGATION_BRIDGE:
            return False
    return False


def _purpose_follows(words: list[str], at: int) -> bool:
    """True when, from `at`, a few fillers (_BETWEEN_WORDS) lead to a run of purpose words that ends
    the clause or is followed by one of _AFTER_PURPOSE_WORDS."""
    first, end = at, min(len(words), at + _MAX_BETWEEN)
    while at < end and words[at] in _BETWEEN_WORDS:
        at += 1
    if at >= len(words) or words[at] not in _PURPOSE_WORDS:
        return False
    led = at > first  # a filler led to the run
    after = _after_run(words, at)
    return after is None or after in _AFTER_PURPOSE_WORDS or (after in _AFTER_PURPOSE_PREPOSITIONS and led)


def _after_run(words: list[str], at: int) -> str | None:
    """The word after the run of purpose words starting at words[at] ("academic and research",
    "testing or evaluation": a comma has ended the clause), None where the run ends the clause."""
    end = _run_end(words, at)
    return words[end] if end < len(words) else None


def _run_end(words: list[str], at: int) -> int:
    """Where the run of purpose words starting at words[at] ends (the index after its last word)."""
    while at + 1 < len(words) and (
        words[at + 1] in _PURPOSE_WORDS
        or (words[at + 1] in ("and", "or") and words[at + 2 : at + 3] and words[at + 2] in _PURPOSE_WORDS)
    ):
        at += 1 if words[at + 1] in _PURPOSE_WORDS else 2
    return at + 1


def _purpose_clause(line: str) -> bool:
    """True when a clause of the line is a restricting purpose and its use word alone, as a note on
    the licence before it: "CC BY 4.0 (academic use)", "MIT / personal use", or the purpose alone
    after a clause ("CC BY 4.0 (academic)", "MIT: research"); or, behind SPDX's prefix for custom
    terms, the purpose alone: `LicenseRef-academic` (as `LicenseRef-academic-use`)."""
    parts = _PURPOSE_CLAUSE_BREAK.split(line)  # clauses, each followed by its separator
    seps = parts[1::2]
    for index, (clause, sep) in enumerate(itertools.zip_longest(parts[::2], seps, fillvalue="")):
        if sep == ":":  # a label: "Research use: allowed" says what is allowed, not that it only is
            continue
        words = _clause_words(clause)
        custom = words[:1] == ["licenseref"]
        words = words[1:] if custom else words
        if not words or words[0] not in _PURPOSE_WORDS:
            continue
        # "commercial & research use" names both uses, as "commercial and research use" does
        if index > 0 and seps[index - 1].strip() == "&" and _COMMERCIAL_WORD.search(parts[2 * index - 2]):
            continue
        rest = words[_run_end(words, 0) :]
        note = custom or _a_note(parts, index)
        if (not rest and note) or (0 < len(rest) <= 2 and all(w in _USE_WORDS for w in rest)):
            return True
    return False


def _a_note(parts: list[str], index: int) -> bool:
    """True when the purpose alone, clause `index` of `parts` (clauses and their separators, as
    _purpose_clause splits them), is a note on what comes before it. Not the whole value ("research"
    alone reads as before: free text, unlisted); not after "|", which sets off a table's next field
    ("CC BY 4.0 | academic"), nor after a field's name ("Genre: academic": _LABELS); and after a comma
    (which may go on with a list: "Available to researchers, educators, companies and the public")
    only where a listed licence alone comes before it and the purpose ends the value: "MIT, academic"."""
    if index == 0:
        return False
    sep, before = parts[2 * index - 1].strip(), parts[2 * index - 2]
    label = _clause_words(before)[-1:] if sep == ":" else []
    if sep == "|" or (label and label[0] in _LABELS):
        return False
    if sep == ",":  # read once, for the second clause only: each clause reads no others (linear)
        return (
            index == 1
            and listed_id(before.strip()) in COMMERCIAL_OK
            and not any(_WORDS.search(later.lower()) for later in parts[2 * index + 2 :: 2])
        )
    return True


def _for_a_purpose(line: str) -> bool:
    """True when the line grants use for a restricting purpose (_PURPOSE_WORDS): "free for academic
    use", "research purposes", "Intel Research Use License". A line that names commercial use says
    more than this reads (the other rules read it)."""
    words = _WORDS.findall(_NON_PROFIT.sub("nonprofit", _academic(line.lower())))
    if words[:1] == ["licenseref"]:  # an SPDX id for custom terms: `LicenseRef-academic-use`
        words = words[1:]
    start = -1  # where the current run of purpose words ("academic and research") starts
    used = False  # a use word ("use", "purposes") has followed the run
    for at, word in enumerate(words):
        if start >= 0 and word in _LICENCE_WORDS:
            return True
        if not used and word in _PURPOSE_WORDS:
            start = at if start < 0 else start
        elif start >= 0 and not used and word in ("and", "or"):
            continue
        elif start >= 0 and not used and word in _USE_WORDS:
            if start > 0 and words[start - 1] == "for":
                return True
            used = True
        else:
            start, used = (at if word in _PURPOSE_WORDS else -1), False
    return start == 0 and used  # the whole line is the purpose: "research use", "academic use"
