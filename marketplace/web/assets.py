"""The dashboard's files, served from the installed packages: ours and the charting library's.

Theory of operation
-------------------
The page's own files are package data of ``marketplace.web`` (``static/``); the charts are
plotly.js, which the ``plotly`` Python package installs inside itself
(``plotly/package_data/plotly.min.js``): it is served from there, never fetched from a CDN and
never copied into this repository. There is no build step: ``index.html`` names its assets as
``{{name}}`` and is filled in when first served with ``/static/<name>?v=<etag>``, so each
asset can be cached for a year (``immutable``) and a new version of it has a new URL. Every
asset is read once, with its ETag (a hash of its bytes) and a gzip copy for clients that
accept it; a request whose ``If-None-Match`` names the ETag gets 304.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

#: Files of ``static/`` that may be served, and their types.
_TYPES: Final = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}
_PLACEHOLDER: Final = re.compile(rb"\{\{([A-Za-z0-9_.-]+)\}\}")
_CACHE_ASSET: Final = b"public, max-age=31536000, immutable"
_CACHE_PAGE: Final = b"no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: bytes, gzip bytes, type, ETag, cache policy."""

    body: bytes
    gzipped: bytes
    content_type: bytes
    etag: bytes
    cache_control: bytes

    @classmethod
    def of(cls, body: bytes, *, content_type: bytes, cache_control: bytes) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(
            body=body,
            gzipped=gzip.compress(body, compresslevel=6, mtime=0),
            content_type=content_type,
            etag=b'"' + digest.encode() + b'"',
            cache_control=cache_control,
        )

    @property
    def version(self) -> str:
        """A short token of the content, for cache-busting URLs."""
        return self.etag.strip(b'"').decode()[:12]


def _sources() -> dict[str, Traversable]:
    """Every servable file by name: ours, then plotly.js from its distribution."""
    files = {
        entry.name: entry
        for entry in resources.files("marketplace.web").joinpath("static").iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in _TYPES)
    }
    files["plotly.min.js"] = resources.files("plotly").joinpath("package_data", "plotly.min.js")
    return files


class Assets:
    """The servable files, read on first use (see the module doc)."""

    def __init__(self) -> None:
        self._sources = _sources()
        self._cache: dict[str, Asset] = {}

    def names(self) -> list[str]:
        """Every asset name ``/static/`` serves."""
        return sorted(n for n in self._sources if n != "index.html")

    def get(self, name: str) -> Asset | None:
        """The asset ``name`` (``None``: no such file). Raises ``OSError`` if it cannot be
        read (a broken installation)."""
        if name == "index.html" or name not in self._sources:
            return None
        return self._load(name, cache_control=_CACHE_ASSET)

    def page(self) -> Asset:
        """``index.html`` with every ``{{name}}`` replaced by its versioned URL."""
        cached = self._cache.get("")
        if cached is not None:
            return cached
        template = self._sources["index.html"].read_bytes()

        def url(match: re.Match[bytes]) -> bytes:
            name = match.group(1).decode()
            asset = self.get(name)
            if asset is None:
                raise FileNotFoundError(f"index.html names a missing asset {name}")
            return f"/static/{name}?v={asset.version}".encode()

        page = Asset.of(
            _PLACEHOLDER.sub(url, template),
            content_type=_TYPES[".html"],
            cache_control=_CACHE_PAGE,
        )
        self._cache[""] = page
        return page

    def _load(self, name: str, *, cache_control: bytes) -> Asset:
        cached = self._cache.get(name)
        if cached is None:
            suffix = name[name.rfind(".") :]
            cached = self._cache[name] = Asset.of(
                self._sources[name].read_bytes(),
                content_type=_TYPES[suffix],
                cache_control=cache_control,
            )
        return cached
