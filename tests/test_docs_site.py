"""The documentation site as it is built (``mkdocs build --strict``) and as a browser renders it.

The site is built once into a temporary folder. Every link and anchor in every built page must
resolve inside the site; headless Chromium (Debian's ``chromium``) must render the generated
references from a loopback HTTP server, with one table row per setting and every command."""

from __future__ import annotations

import functools
import html.parser
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
from system_tools import chromium, require

from streamer.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr
    return out


#: The attributes that point at another file of the site.
_LINKING = {("a", "href"), ("link", "href"), ("script", "src"), ("img", "src")}


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif (tag, name) in _LINKING:
                self.links.append(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _target(site: Path, page: Path, link: str) -> Path:
    # the 404 page links from the site's root, wherever it is served
    base = site if link.startswith("/") else page.parent
    path = (base / unquote(link).lstrip("/")).resolve()
    return path / "index.html" if path.is_dir() else path


def test_every_link_and_anchor_of_the_built_site_resolves(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20
    parsed = {page: _parse(page) for page in pages}
    broken = []
    for page, found in parsed.items():
        for link in found.links:
            if urlsplit(link).scheme or link.startswith(("//", "mailto:")):
                continue  # outside the site
            path, anchor = urldefrag(link)
            target = _target(site, page, path) if path else page
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{page.relative_to(site)}: {link}")
            elif anchor and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if anchor not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, broken[:20]


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _dom(url: str) -> str:
    # the site must not need the network: every request but the loopback server's goes to a
    # proxy that is not there (loopback bypasses a proxy by default)
    done = chromium("--proxy-server=127.0.0.1:9", "--virtual-time-budget=5000", "--dump-dom", url)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.browser
def test_chromium_renders_the_generated_references(served: str) -> None:
    require("chromium", package="chromium")
    dom = _dom(f"{served}/reference/configuration/")
    rows = [n for n in Settings.model_fields if f"<td><code>{n}</code></td>" in dom]
    assert rows == list(Settings.model_fields)
    assert "<!-- generated" not in dom
    cli = _dom(f"{served}/reference/cli/")
    for command in ("streamer worker", "streamer dlq replay", "streamer kafka start"):
        assert f"<code>{command}</code>" in cli, command
    # Material's navigation lists every section
    for title in ("Getting started", "Operations", "Guarantees and failure modes", "Reference"):
        assert title in cli, title
