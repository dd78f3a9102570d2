"""A Hugging Face ``tokenizer.json`` rebuilt from the vocabulary inside a GGUF model file, so
that ``tokenizer="hf:PATH"`` can be measured against the llama.cpp server serving that file.

Reads the GGUF header's key-value metadata (format version 2 or 3: little-endian, each value
typed), never the tensors. Handles the byte-level BPE vocabularies llama.cpp calls ``gpt2``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["read_metadata", "write_tokenizer_json"]

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_CONTROL = 3  # llama.cpp's token type of special tokens (<|im_start|>, <|endoftext|> ...)


def _read(handle: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    return struct.unpack(fmt, handle.read(size))[0]


def _string(handle: BinaryIO) -> str:
    return handle.read(_read(handle, "<Q")).decode("utf-8")


def _value(handle: BinaryIO, kind: int) -> Any:
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item_kind = _read(handle, "<I")
        return [_value(handle, item_kind) for _ in range(_read(handle, "<Q"))]
    return _read(handle, _SCALARS[kind])


def read_metadata(path: Path) -> dict[str, Any]:
    """The key-value metadata of a GGUF file."""
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version = _read(handle, "<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        _read(handle, "<Q")  # tensor count
        count = _read(handle, "<Q")
        metadata: dict[str, Any] = {}
        for _ in range(count):
            key = _string(handle)
            metadata[key] = _value(handle, _read(handle, "<I"))
        return metadata


def write_tokenizer_json(gguf: Path, target: Path) -> Path:
    """Write the GGUF model's byte-level BPE tokenizer as ``target`` (a tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    metadata = read_metadata(gguf)
    if metadata["tokenizer.ggml.model"] != "gpt2":
        raise ValueError(f"{gguf}: only byte-level BPE vocabularies are rebuilt here")
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in metadata["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges))
    # The "smollm" pre-tokenizer of llama.cpp: every digit apart, then GPT-2's split.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    kinds = metadata["tokenizer.ggml.token_type"]
    tokenizer.add_special_tokens(
        [t for t, kind in zip(tokens, kinds, strict=True) if kind == _CONTROL]
    )
    tokenizer.save(str(target))
    return target


def write_tokenizer_config(gguf: Path, target: Path) -> Path:
    """Write the GGUF model's chat template and special tokens as ``target`` (a
    tokenizer_config.json, as a Hugging Face model directory has it)."""
    import json

    metadata = read_metadata(gguf)
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    config = {
        "chat_template": metadata["tokenizer.chat_template"],
        "bos_token": tokens[metadata["tokenizer.ggml.bos_token_id"]],
        "eos_token": tokens[metadata["tokenizer.ggml.eos_token_id"]],
    }
    target.write_text(json.dumps(config), encoding="utf-8")
    return target
