"""A Hugging Face model's chat template (Jinja), rendered as ``transformers`` renders it, for
``tokenizer="hf:PATH"``.

A model directory carries its template as ``chat_template.jinja`` or as the
``chat_template`` of ``tokenizer_config.json`` (a string, or named templates of which
``default`` is used, and ``tool_use`` when the request has tools). It is rendered in Jinja's
immutable sandbox with ``transformers``' conventions: blocks trimmed, ``loopcontrols``, the
``tojson`` filter, ``raise_exception`` and ``strftime_now``, the special tokens of the
config (``bos_token``, ``eos_token`` ...) as variables, and ``add_generation_prompt`` on.
Message content given as parts is joined into its text first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prismq_llmtools.errors import TokenizerError

__all__ = ["ChatTemplate"]

_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")


class ChatTemplate:
    """A chat template and the special tokens it may use."""

    def __init__(self, templates: Mapping[str, str], tokens: Mapping[str, str], source: Path):
        self._templates = templates
        self._tokens = tokens
        self.source = source
        self._compiled: dict[str, Any] = {}

    @classmethod
    def find(cls, directory: Path) -> ChatTemplate | None:
        """The template of the model in ``directory``, or None when it has none."""
        config_path = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_path.is_file():
            try:
                loaded = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise TokenizerError(f"cannot read {config_path}: {exc}") from exc
            config = loaded if isinstance(loaded, dict) else {}
        tokens = {key: _token_text(config[key]) for key in _TOKEN_KEYS if config.get(key)}
        jinja_path = directory / "chat_template.jinja"
        if jinja_path.is_file():
            return cls({"default": jinja_path.read_text(encoding="utf-8")}, tokens, jinja_path)
        template = config.get("chat_template")
        if isinstance(template, str):
            return cls({"default": template}, tokens, config_path)
        if isinstance(template, list):
            named = {
                str(item["name"]): str(item["template"])
                for item in template
                if isinstance(item, Mapping) and "name" in item and "template" in item
            }
            if "default" in named:
                return cls(named, tokens, config_path)
        return None

    def render(self, messages: Sequence[Mapping[str, Any]], tools: object = None) -> str:
        """The prompt text of ``messages`` (and ``tools``), with the generation prompt."""
        name = "tool_use" if tools and "tool_use" in self._templates else "default"
        template = self._compiled.get(name)
        if template is None:
            template = self._compiled.setdefault(name, _compile(self._templates[name], self))
        plain = [{**m, "content": _text(m.get("content"))} for m in messages]
        try:
            rendered: str = template.render(
                messages=plain,
                tools=tools or None,
                add_generation_prompt=True,
                **self._tokens,
            )
        except TokenizerError:
            raise
        except Exception as exc:  # a template error of any kind, raised while rendering
            raise TokenizerError(
                f"the chat template of {self.source} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return rendered


def _compile(source: str, owner: ChatTemplate) -> Any:
    try:
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise TokenizerError(
            f"{owner.source} has a chat template, which needs jinja2: "
            "pip install 'prismq_llmtools[hf]'"
        ) from exc

    def raise_exception(message: str) -> None:
        raise TokenizerError(f"the chat template of {owner.source} refused: {message}")

    def tojson(
        value: object,
        ensure_ascii: bool = False,
        indent: int | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return environment.from_string(source)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"the chat template of {owner.source} is invalid: {exc}") from exc


def _token_text(value: object) -> str:
    """A special token as the config gives it: a string, or an AddedToken's ``content``."""
    if isinstance(value, Mapping):
        return str(value.get("content", ""))
    return str(value)


def _text(content: object) -> object:
    """Content parts joined into their text; any other content as it is."""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return content
