"""The README is a front door and docs/ holds one page per topic; every link between them lands."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a `# comment` in a bash block is not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors (lowercase, punctuation dropped, spaces to hyphens, -1 for repeats)
    and explicit `<a id=...>` anchors."""
    text = _prose(page.read_text())
    anchors: set[str] = set(re.findall(r'<a id="([^"]+)">', text))
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(_prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not this repository's
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading in {dest.name})")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door_that_links_every_docs_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 300, "the README stays short: deep sections belong in docs/"
    linked = {(REPO / target.partition("#")[0]).resolve() for target in LINK.findall(readme)}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_fused_docs_list_exactly_what_the_compiler_registry_supports() -> None:
    from training.fused.emitters import supported_table

    text = (REPO / "docs" / "fused.md").read_text()
    listed = re.search(r"<!-- supported-sql:start -->\n(.*?)\n<!-- supported-sql:end -->", text, re.S)
    assert listed, "docs/fused.md lost its supported-sql markers"
    assert listed.group(1).strip() == supported_table(), (
        "docs/fused.md's supported SQL differs from the registry: regenerate it with "
        "python -c \"from training.fused.emitters import supported_table; print(supported_table())\"")


def test_the_fault_table_lists_every_fault_kind() -> None:
    from orchestration.demo_data import FAULTS  # noqa: PLC0415

    table = (REPO / "docs" / "validation.md").read_text().split("## Injected faults", 1)[1]
    listed = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M))
    assert listed == set(FAULTS), f"docs/validation.md's fault table: missing {set(FAULTS) - listed}, extra {listed - set(FAULTS)}"
