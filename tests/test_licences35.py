"""Licence values session 35 found misread. A request to be contacted for a commercial licence,
written after the commercial phrase ("For commercial licensing, contact us"), read unlisted, which a
`commercial_reason` let into the commercial variant, while "contact us for commercial licensing" was
barred: the order does not change what it says. Beside an open licence it is an offer of a commercial
licence (dual licensing), read as "MIT; contact us for commercial licensing" is: unlisted. A full
stop after the licence's name separates the offer as a `;` does. A purpose word naming who made the
data or where ("annotated only by research groups") is no limit on its use."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# The contact after the commercial phrase: each was unlisted.
CONTACT_AFTER = [
    "For commercial licensing, contact us",
    "Commercial licensing: contact us",
    "For commercial licensing, please contact the authors",
    "Commercial licences: contact info@example.org",
    "For a commercial license, email us",
    "Commercial licensing \u2014 get in touch",
    "For commercial licensing inquiries, contact us",
    "commercial rights: contact the publisher",
    "Commercial terms: please reach out to sales@example.org",
    # the licence's word before the rest of the request, as "commercial use upon request" reads
    "Commercial licensing upon request",
    "Commercial license with a license fee",
]
# The same requests, already barred: they must stay so.
STILL_BARRED = [
    "contact us for commercial licensing",
    "For commercial use, please contact the authors",
    "Commercial use: contact info@example.org",
    "commercial licensing available",
    "commercial licensing on request",
    # not an offer of a licence beside an open one: commercial use itself is asked for
    "MIT. For commercial use, contact us",
    "MIT; contact us for commercial use",
    # the offer is not all that follows the licence
    "MIT License. For commercial licensing, contact us. Research use only.",
    "CC-BY-NC-4.0. For commercial licensing, contact us",
    # a contact other than "us" or the authors is no offer, in either order
    "MIT; contact info@example.org for commercial licensing",
    "MIT. Commercial licensing: contact info@example.org",
    # not a listed or GNU licence before the offer
    "Custom licence. For commercial licensing, contact us",
    # "for" names a purpose after a provenance verb: a use limit, as before
    "collected only for research purposes",
    "annotated only for academic use",
    "used only in research settings",
    "only in research settings",
]


@pytest.mark.parametrize("licence", CONTACT_AFTER)
def test_a_contact_after_the_commercial_phrase_bars(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize("licence", STILL_BARRED)
def test_restrictions_beside_them_stay_barred(licence: str) -> None:
    assert_barred(licence)


# An open licence, then an offer of a commercial licence in that order, or after a full stop.
DUAL = [
    "MIT License. For commercial licensing, contact us",
    "MIT License; for commercial licensing, contact us",
    "MIT; commercial licensing: contact us",
    "GPL-3.0. For commercial licensing, please contact the authors.",
    "Apache-2.0 (for a commercial license, contact us)",
    "AGPL-3.0 / commercial licenses: email us",
    "MIT. Commercial licenses available",
    "MIT License. Commercial licenses available.",
    "GPL-3.0. Contact us for commercial licensing",
    "Apache 2.0 (commercial licensing upon request)",
    "MIT; commercial licensing upon request",
    "CC BY 4.0. For commercial licensing inquiries, please contact the authors",
]


@pytest.mark.parametrize("licence", DUAL)
def test_an_open_licence_then_an_offer_reads_as_dual_licensing(licence: str) -> None:
    assert_unlisted(licence)


# Who made the data, or where: no limit on its use. Each was barred.
PROVENANCE = [
    "annotated only by research groups",
    "collected only in research settings",
    "CC-BY-4.0; transcribed exclusively by academic volunteers",
    "MIT (recorded only at research labs)",
    "Annotated only by researchers",
]
# Neither a contact nor a limit: as before.
UNCHANGED_UNLISTED = [
    "For commercial support, contact us",
    "Free for commercial use, contact us with questions",
    "No commercial licence required. Contact us with questions",
    "Commercial use allowed; for questions, contact us",
    "For questions, contact us",
]


@pytest.mark.parametrize("licence", PROVENANCE + UNCHANGED_UNLISTED)
def test_notes_about_the_data_or_questions_do_not_bar(licence: str) -> None:
    assert_unlisted(licence)
