"""The documentation holds together: the README stays a front door, and every relative
link in it, in docs/ and in the other pages a reader reaches from them resolves, to a
file that exists and to a heading that file has."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.docs import DOCS, README, ROOT, anchors, links

# Pages that link into the docs besides the README and docs/ themselves.
OTHER_PAGES = ["SECURITY.md", "client/README.md", "client-js/README.md"]
PAGES = [*DOCS, *(ROOT / page for page in OTHER_PAGES)]

FRONT_DOOR_WORDS = 2000


def test_the_readme_is_a_front_door() -> None:
    words = len(README.read_text().split())
    assert words <= FRONT_DOOR_WORDS, (
        f"the README has {words} words, past {FRONT_DOOR_WORDS}: move the detail to docs/"
    )


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(README.parent / link.split("#")[0]).resolve() for link in links(README)}
    assert {page.resolve() for page in DOCS[1:]} <= linked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in links(page):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, fragment = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{link}: no such heading in {path.relative_to(ROOT)}")
    assert not broken, broken
