"""Prompt tokens of image inputs, by OpenAI's published vision rules.

Tile models (gpt-4o, gpt-4.1, gpt-5, o1, o3 ...): ``detail: low`` costs the base tokens;
``high`` scales the image to fit 2048x2048, then so its shortest side is at most 768, and
adds the tile tokens per 512 px tile. ``auto`` is counted as ``high`` (OpenAI picks per
image and does not say how; high is what it bills for any image larger than a tile, and
never less). Patch models (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32 px patches,
scaled down to at most 1536, times a per-model multiplier, whatever the detail.

Image size comes from explicit ``width``/``height`` hints on the part (or on its
``image_url`` object), else from the header of a ``data:`` URL (PNG, JPEG, GIF, WebP).
When neither gives it, the image is counted at the most it can cost: 8 tiles, or 1536
patches. That never under-counts, which is what a budget or rate limiter needs.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai.models import ImageRule

__all__ = ["count_image_part", "image_size", "image_tokens"]

_MAX_TILES = 8  # a 768 x 2048 image, the largest after both resizes
_MAX_PATCHES = 1536
_PATCH = 32
_HEADER_BYTES = 65536  # JPEG size markers may follow a large EXIF block


def image_tokens(rule: ImageRule, size: tuple[int, int] | None, detail: str = "auto") -> int:
    """Tokens for one image of ``size`` (width, height), or of unknown size when None."""
    if rule.patch_multiplier is not None:
        patches = _MAX_PATCHES if size is None else _patches(*size)
        return int(patches * rule.patch_multiplier)
    if detail == "low":
        return rule.base_tokens
    tiles = _MAX_TILES if size is None else _tiles(*size)
    return rule.base_tokens + rule.tile_tokens * tiles


def _tiles(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches <= _MAX_PATCHES:
        return patches
    shrink = math.sqrt(_PATCH * _PATCH * _MAX_PATCHES / (width * height))
    w, h = width * shrink, height * shrink
    # Shrink a little more so that whole patches fit, as OpenAI's guide describes.
    fit = min(math.floor(w / _PATCH) / (w / _PATCH), math.floor(h / _PATCH) / (h / _PATCH))
    w, h = int(w * fit), int(h * fit)
    return min(_MAX_PATCHES, math.ceil(w / _PATCH) * math.ceil(h / _PATCH))


def count_image_part(part: Mapping[str, object], rule: ImageRule) -> int:
    """Tokens of a chat ``image_url`` part or a Responses ``input_image`` part."""
    image = part.get("image_url")
    url: object = image
    detail: object = part.get("detail", "auto")
    hints: list[Mapping[str, object]] = [part]
    if isinstance(image, Mapping):
        url = image.get("url")
        detail = image.get("detail", detail)
        hints.insert(0, image)
    if detail is None:
        detail = "auto"
    if detail not in ("low", "high", "auto"):
        raise RequestFormatError(f"image detail must be low, high or auto, got {detail!r}")
    size = _hinted_size(hints)
    if size is None and isinstance(url, str):
        size = image_size(url)
    return image_tokens(rule, size, str(detail))


def _hinted_size(sources: list[Mapping[str, object]]) -> tuple[int, int] | None:
    for source in sources:
        width, height = source.get("width"), source.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            return width, height
    return None


def image_size(url: str) -> tuple[int, int] | None:
    """(width, height) from a base64 ``data:`` URL's image header, or None if unknown."""
    if not url.startswith("data:"):
        return None
    meta, _, payload = url.partition(",")
    if not meta.endswith(";base64"):
        return None
    head = _b64_prefix(payload, _HEADER_BYTES)
    size = header_size(head)
    if size is None and len(payload) > len(head) * 4 // 3 + 4:
        size = header_size(_b64_prefix(payload, len(payload)))
    return size


def _b64_prefix(payload: str, n_bytes: int) -> bytes:
    chars = min(len(payload), (n_bytes + 2) // 3 * 4)
    chars -= chars % 4
    try:
        return base64.b64decode(payload[:chars])
    except (binascii.Error, ValueError):
        return b""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, WebP or JPEG from its first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in {b"GIF87a", b"GIF89a"} and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xDA)})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 3 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
