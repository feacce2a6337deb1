"""The README and docs/ link only files that exist in this repository (a clone has no ../shared)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def local_targets(path: Path) -> list[str]:
    targets = [t for t in LINK.findall(path.read_text(encoding="utf-8"))
               if not re.match(r"[a-z]+:", t) and not t.startswith("#")]  # not https:, mailto:, an anchor
    return [t.split("#")[0] for t in targets]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_points_into_the_repository(document: Path):
    for target in local_targets(document):
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
        assert resolved.exists(), f"{document.name} links a missing file: {target}"


def test_the_readme_cites_the_api_reference_in_docs():
    assert "docs/payment-apis.md" in local_targets(ROOT / "README.md")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../" not in readme and "/work/" not in readme  # no path that only exists on a developer's machine
