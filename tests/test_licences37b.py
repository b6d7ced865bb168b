"""Licence values a red team of session 37 found misread after its relaxation: a pair granting both
uses after a listed licence that leads the value ("MIT licence for commercial and non-commercial use")
read as a grant where the pair ended only its clause, so whatever followed it was read as if the pair
had said "commercial" alone. "MIT licence for commercial and non-commercial use. Fee required.",
"... (ask the authors)", "..., except by companies" barred at 66b6bbe (the pair's "non-commercial")
and read unlisted at 136b7df, which a `commercial_reason` let into the commercial variant. A pair
now grants only where it ends the value (or goes on only "under" a listed licence, which ends it
too), after a listed licence or after words that grant ("Free for commercial and non-commercial use.
Fee required." read unlisted at both commits)."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# Each barred at 66b6bbe and read unlisted at 136b7df.
LED_PAIR_GOES_ON = [
    "MIT licence for commercial and non-commercial use. Permission required.",
    "MIT licence for commercial and non-commercial use. Fee required.",
    "MIT licence for commercial and non-commercial use (fee applies)",
    "MIT licence for commercial and non-commercial use; fees apply",
    "MIT licence for commercial and non-commercial use. Ask the authors.",
    "MIT licence for commercial and non-commercial use (ask the authors)",
    "MIT licence for commercial and non-commercial use (non-profits)",
    "MIT licence for commercial and non-commercial use (internal)",
    "MIT licence for commercial and non-commercial use? No.",
    "MIT licence for commercial and non-commercial use [pending]",
    "MIT licence for commercial and non-commercial use (see LICENSE)",
    "MIT licence for commercial and non-commercial use, but see the model card",
    "MIT licence for commercial and non-commercial use. Not granted.",
    "MIT licence for commercial and non-commercial use. Denied.",
    "MIT licence for commercial and non-commercial use (revoked)",
    "MIT licence for commercial and non-commercial use (not granted)",
    "MIT licence for commercial and non-commercial use, except commercial use",
    "MIT licence for commercial and non-commercial use, excluding commercial use",
    "MIT licence for commercial and non-commercial use, except by companies",
    "MIT licence for commercial and non-commercial use, not companies",
    "MIT licence for commercial and non-commercial use, companies excluded",
    "MIT licence for commercial and non-commercial use (paid)",
    "MIT licence for commercial and non-commercial use (commercial: paid)",
    "MIT licence for commercial and non-commercial use. Commercial: ask.",
    "BSD-3-Clause for commercial and non-commercial use. Permission required.",
    "MIT license for commercial and noncommercial use. Prior written permission required.",
    "MIT license for commercial & non-commercial use; written consent needed",
    "MIT license for commercial & non-commercial use; licence fee applies",
    "MIT licence for commercial and non_commercial use (permission required)",
    "MIT License: for commercial and non-commercial use. Fee required.",
    "MIT licence for commercial and non-commercial use\npermission required",
    "MIT licence for commercial and non-commercial use under CC BY 4.0; fee required",
]


@pytest.mark.parametrize("licence", LED_PAIR_GOES_ON)
def test_a_pair_after_a_listed_licence_that_goes_on_bars_as_before(licence: str) -> None:
    assert_barred(licence)


# The relaxation as meant: the pair (and its tail) ends the value, or only "under" a listed licence
# follows it; a full stop or "!" after it ends it too.
LED_PAIR_ENDS = [
    "MIT licence for commercial and non-commercial use",
    "MIT licence for commercial and non-commercial use.",
    "MIT licence for commercial and non-commercial use!",
    "MIT licence for commercial and non-commercial use. ",
    "MIT licence for both commercial and non-commercial use",
    "MIT licence for commercial and non-commercial purposes",
    "MIT licence for commercial and non-commercial use permitted",
    "MIT License: for commercial and non-commercial use",
    "The MIT License for commercial and non-commercial use",
    "MIT licence for commercial and non-commercial use under MIT",
    "Apache 2.0 licence for commercial and non-commercial use under CC BY 4.0.",
]


@pytest.mark.parametrize("licence", LED_PAIR_ENDS)
def test_a_pair_after_a_listed_licence_that_ends_the_value_is_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# The same, older (each unlisted at 66b6bbe and 136b7df): a pair after words that grant ended only its
# clause, and what followed it was read as if the pair said "commercial" alone. A version's "." ends a
# clause too, so "CC-BY-4.0 for ..." was such a pair ("0 for commercial and ...").
GRANTED_PAIR_GOES_ON = [
    "Free for commercial and non-commercial use. Fee required.",
    "Free for commercial and non-commercial use (ask the authors)",
    "Free for commercial and non-commercial use, except by companies",
    "Free for commercial and non-commercial use (paid)",
    "Free for commercial and non-commercial use. Not granted.",
    "Commercial and non-commercial use. Ask first.",
    "MIT License. Commercial and non-commercial use. Ask first.",
    "MIT License. For commercial and non-commercial use. Contact us.",
    "Apache-2.0 for commercial and non-commercial use; permission required",
    "CC-BY-4.0 for commercial and non-commercial use. Ask first.",
    "GPL-3.0 for commercial and non-commercial use (fee applies)",
    "Free for production and non-production use. Fee required.",
    "Free for production and non-production use (ask the authors)",
]


@pytest.mark.parametrize("licence", GRANTED_PAIR_GOES_ON)
def test_a_granted_pair_that_goes_on_bars(licence: str) -> None:
    assert_barred(licence)


GRANTED_PAIR_ENDS = [
    "Free for commercial and non-commercial use",
    "Free for commercial and non-commercial use.",
    "CC BY 4.0, free for commercial and non-commercial use",
    "Released under MIT, free for commercial and non-commercial use",
    "CC-BY-4.0 for commercial and non-commercial use.",
    "Free for commercial and non-commercial use under CC BY 4.0",
    "Free for production and non-production use",
    "Free for production and non-production use.",
    "Free for production and non-production use permitted",
]


@pytest.mark.parametrize("licence", GRANTED_PAIR_ENDS)
def test_a_granted_pair_that_ends_the_value_is_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# Commercial rights kept back in words the session-37 rule missed (unlisted at 66b6bbe and 136b7df):
# a colon before "reserved", and "purposes" as the use kept back.
RESERVED_IN_OTHER_WORDS = [
    "Commercial rights: reserved",
    "Commercial use: reserved",
    "Rights for commercial purposes reserved",
    "Rights for commercial purposes are reserved",
    "Commercial purposes reserved",
]


@pytest.mark.parametrize("licence", RESERVED_IN_OTHER_WORDS)
def test_commercial_rights_kept_back_in_other_words_bar(licence: str) -> None:
    assert_barred(licence)


# Each read unlisted at 66b6bbe and barred at 136b7df, once "use" became a granting head: a use as a
# condition (a request to cite) or as what the data has been used for is no grant for a purpose.
USE_AS_A_CONDITION = [
    "MIT. Please cite our paper if you use it for research",
    "MIT; please cite the paper when used for research",
    "CC BY 4.0. If you use this dataset for research, please cite us",
    "CC BY 4.0 - please cite when used for research",
    "Apache-2.0; cite us if used for research",
    "MIT License (please cite if used for research)",
    "Widely used for research",
]


@pytest.mark.parametrize("licence", USE_AS_A_CONDITION)
def test_a_use_as_a_condition_or_as_history_is_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# "only if" limits the use to the purpose (each unlisted at 66b6bbe and 136b7df), and a use granted
# for a purpose still bars beside a condition or a history.
USE_LIMITED = [
    "Allowed only when used for research",
    "Only if used for research",
    "You may use it only if used for research",
    "Use for research",
    "If you use it, use for research",
    "Commonly used for research; use for research only",
    "annotated by research groups only, use for research",
]


@pytest.mark.parametrize("licence", USE_LIMITED)
def test_a_use_limited_to_a_purpose_bars(licence: str) -> None:
    assert_barred(licence)
