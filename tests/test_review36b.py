"""Review of session 36's later changes (licence pairs, CSV headers after blank lines).

* A pair that names both uses ("commercial and non-commercial use") read as a grant whatever came
  before it in its clause, unless a word of a short list set the uses apart: "Ask the authors for
  commercial and non-commercial use" (permission needed for either) read unlisted, where it was
  barred before the pair rule. The pair now grants only after words that grant (or none).
* "Non\u00a0commercial" (a no-break space, as pasted from a web page) read unlisted: only Unicode
  dashes after "non" were read as "-".
* ubuntu refused a file whose header lacks a column at `file:1` even when blank lines before the
  header (let be since this session) put it on a later line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_csv36 import DIALOGUE, _run
from test_licence_names import assert_barred, assert_unlisted

# A use that needs someone's leave: each read unlisted (the commercial ones barred before the pair rule).
NEEDS_LEAVE = [
    "Ask the authors for commercial and non-commercial use",
    "Email us for commercial and non-commercial use",
    "Write to us for commercial and non-commercial use",
    "Apply for commercial and non-commercial use",
    "Royalties apply for commercial and non-commercial use",
    "Negotiable for commercial and non-commercial use",
    "Ask for production and non-production use",
]


@pytest.mark.parametrize("licence", NEEDS_LEAVE)
def test_a_pair_after_words_that_grant_nothing_still_bars(licence: str) -> None:
    assert_barred(licence)


# Grants, as session 36 read them: they stay unlisted.
GRANTS = [
    "Free of charge for commercial and non-commercial use",
    "Can be used for commercial and non-commercial purposes",
    "Suitable for both commercial and non-commercial use",
    "The dataset is freely available for commercial and non-commercial use",
    "Free for production and non-production use",
]


@pytest.mark.parametrize("licence", GRANTS)
def test_a_pair_after_words_that_grant_stays_unlisted(licence: str) -> None:
    assert_unlisted(licence)


@pytest.mark.parametrize("space", ["\u00a0", "\u202f", "\u2007"], ids=["nbsp", "narrow-nbsp", "figure"])
def test_non_commercial_with_a_no_break_space_bars(space: str) -> None:
    assert_barred(f"Non{space}commercial")
    assert_barred(f"Free for non{space}commercial research")


def test_ubuntu_refuses_a_header_after_blank_lines_at_its_line(tmp_path: Path) -> None:
    """The header (no `from` column) is on line 3: the quarantine named line 1, a blank line."""
    bad = DIALOGUE.replace(b",from,", b",sender,")
    (tmp_path / "dialogueText.csv").write_bytes(b"\n\n" + bad)
    result = _run("ubuntu", tmp_path)
    assert result.quarantine.select("origin", "check").rows() == [("dialogueText.csv:3", "csv_header")]
