"""Reading the explorer's pages in tests: rows by their data attributes, text without tags; the app to read."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from backend.api import ApiSettings, create_app


def explorer_client(settings) -> TestClient:
    """The API (explorer included) over `settings`; a module of its own, as another folder's `conftest` may be
    the one imported under that name when the whole suite runs."""
    return TestClient(create_app(settings, ApiSettings()))


def rows(page: str, attribute: str) -> dict[str, str]:
    """Each `<tr data-ATTRIBUTE="key" ...>...</tr>` of the page, by key."""
    found = {}
    for match in re.finditer(rf'<tr {attribute}="([^"]+)"(.*?)</tr>', page, re.S):
        found[match.group(1)] = match.group(0)
    return found


def data(fragment: str, name: str) -> str | None:
    match = re.search(rf'data-{name}="([^"]*)"', fragment)
    return None if match is None else html.unescape(match.group(1))


def text(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    fragment = re.sub(r"<script.*?</script>", " ", fragment, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def visible_keys(page: str) -> list[str]:
    """Raw flag reason keys that leaked into the visible text."""
    seen = text(page)
    keys = (
        "free_rider",
        "sybil_cluster",
        "distance_outlier",
        "inconsistent_direction",
        "median_norm",
        "z_score",
    )
    return [k for k in keys if k in seen]
