"""Image parts: OpenAI's vision rules, image sizes from data: URL headers, and estimates."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.errors import RequestFormatError
from prismq_llmtools.openai.images import header_size, image_size, image_tokens
from prismq_llmtools.openai.models import ImageRule, model_info
from prismq_llmtools.openai.tokens import count_request, count_text

TILES_4O = ImageRule(base_tokens=85, tile_tokens=170)


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">II5B", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\0\0\0"


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\1\1\0\0\1\0\1\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\0" * 9
    return b"\xff\xd8" + app0 + b"\xff\xff" + sof0 + b"\xff\xd9"


def webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + payload


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"\x2f" + bits.to_bytes(4, "little")
    return b"RIFF" + struct.pack("<I", 13) + b"WEBPVP8L" + struct.pack("<I", 5) + body


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\0\0\0" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8 " + struct.pack("<I", 10) + frame


def data_url(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # OpenAI vision guide example
        ((2048, 4096), "high", 1105),  # OpenAI vision guide example
        ((4096, 8192), "low", 85),  # OpenAI vision guide example
        ((512, 512), "high", 255),
        ((513, 500), "high", 425),
        ((100, 100), "auto", 255),
        (None, "low", 85),
        (None, "high", 85 + 8 * 170),
    ],
)
def test_tile_rule_matches_openai_examples(
    size: tuple[int, int] | None, detail: str, tokens: int
) -> None:
    """Tile models: base tokens, plus tiles of 512 after fitting 2048 and shortest side 768."""
    assert image_tokens(TILES_4O, size, detail) == tokens


def test_patch_rule_matches_openai_examples() -> None:
    """Patch models: 32 px patches (1800x2400 scales to 1452), capped at 1536, times multiplier."""
    unit = ImageRule(patch_multiplier=1.0)
    assert image_tokens(unit, (1024, 1024), "low") == 1024
    assert image_tokens(unit, (1800, 2400), "high") == 1452
    assert image_tokens(unit, (10000, 10000), "auto") <= 1536
    assert image_tokens(ImageRule(patch_multiplier=1.62), (1024, 1024)) == 1658
    assert image_tokens(ImageRule(patch_multiplier=1.62), None) == int(1536 * 1.62)


@pytest.mark.parametrize(
    "make", [png, gif, jpeg, webp_vp8x, webp_vp8l, webp_vp8], ids=lambda f: f.__name__
)
def test_header_sizes_are_read_from_every_format(make: Any) -> None:
    """PNG, GIF, JPEG and the three WebP flavours give their width and height."""
    assert header_size(make(1234, 567)) == (1234, 567)
    assert image_size(data_url(make(321, 45))) == (321, 45)


def test_unknown_sources_give_no_size() -> None:
    """Remote URLs, non-base64 data URLs and unknown bytes have no known size."""
    assert image_size("https://example.com/cat.png") is None
    assert image_size("data:image/png,rawbytes") is None
    assert image_size("data:image/png;base64,!!!!") is None
    assert header_size(b"BM not supported") is None


def user_with(part: dict[str, Any], model: str = "gpt-4o") -> int:
    body = {"model": model, "messages": [{"role": "user", "content": [part]}]}
    return count_request(body).prompt_tokens


def base(model: str = "gpt-4o") -> int:
    """Tokens of the single user message around the image: framing, role, reply priming."""
    return 3 + count_text("user", encoding="o200k_base") + model_info(model).chat.reply_priming


@pytest.mark.parametrize(
    ("model", "detail", "tokens"),
    [
        ("gpt-4o", "high", 765),
        ("gpt-4o", "low", 85),
        ("gpt-4o-mini", "high", 2833 + 4 * 5667),
        ("gpt-4o-mini", "low", 2833),
        ("gpt-4.1", "high", 765),
        ("o1", "high", 75 + 4 * 150),
        ("o3-2025-04-16", "low", 75),
        ("gpt-5", "high", 70 + 4 * 140),
        ("gpt-4.1-mini", "low", int(1024 * 1.62)),
        ("gpt-4.1-nano", "high", int(1024 * 2.46)),
        ("o4-mini", "high", int(1024 * 1.72)),
    ],
)
def test_image_parts_in_chat_use_the_model_family_rule(
    model: str, detail: str, tokens: int
) -> None:
    """A 1024x1024 PNG data URL costs each family's published image tokens."""
    part = {"type": "image_url", "image_url": {"url": data_url(png(1024, 1024)), "detail": detail}}
    assert user_with(part, model) == base(model) + tokens


def test_size_hints_and_unknown_size_estimate() -> None:
    """width/height hints give the size of remote images; without them the maximum is charged."""
    hinted = {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "width": 512, "height": 512},
    }
    assert user_with(hinted) == base() + 255
    unknown = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert user_with(unknown) == base() + 85 + 8 * 170
    legacy = {"type": "image_url", "image_url": "https://x/y.png", "width": 100, "height": 100}
    assert user_with(legacy) == base() + 255


def test_responses_input_image_parts() -> None:
    """Responses input_image parts use the same rules, with detail on the part."""
    item = {
        "role": "user",
        "content": [
            {"type": "input_image", "image_url": data_url(gif(2048, 4096)), "detail": "high"}
        ],
    }
    assert count_request({"model": "gpt-4o", "input": [item]}).prompt_tokens == base() + 1105


def test_invalid_detail_is_rejected() -> None:
    """An image detail other than low, high or auto is a RequestFormatError."""
    part = {"type": "image_url", "image_url": {"url": "https://x", "detail": "ultra"}}
    with pytest.raises(RequestFormatError, match="detail"):
        user_with(part)


def test_audio_and_file_parts_add_no_text_tokens() -> None:
    """input_audio and file parts are billed outside tiktoken's view and add nothing here."""
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    file_part = {"type": "file", "file": {"file_id": "file-1"}}
    assert user_with(audio) == base()
    assert user_with(file_part) == base()


@settings(max_examples=500, deadline=None)
@given(
    prefix=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8X", b"\xff\xd8"]
    ),
    tail=st.binary(max_size=64),
)
def test_header_parsing_never_raises(prefix: bytes, tail: bytes) -> None:
    """Truncated or garbage headers give None or a size, never an exception."""
    size = header_size(prefix + tail)
    assert size is None or (isinstance(size[0], int) and isinstance(size[1], int))
    assert image_size(data_url(prefix + tail)) == size
