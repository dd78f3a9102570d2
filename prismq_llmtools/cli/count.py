"""``prismq-llmtools count REQUEST.json``: the prompt tokens a request will be billed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_ENDPOINTS = ("chat", "responses", "embeddings", "completions")


def register(subparsers: Any) -> None:
    """Add the ``count`` subcommand to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "count",
        help="count the prompt tokens of an OpenAI request body",
        description=(
            "Count the prompt tokens OpenAI will bill for a JSON request body (chat "
            "completions, Responses, embeddings or completions), offline."
        ),
    )
    parser.add_argument("request", metavar="REQUEST.json", help="request body file; - for stdin")
    parser.add_argument(
        "--json",
        action="store_true",
        dest="as_json",
        help="print prompt_tokens, completion_cap, total_estimate, encoding and model as JSON",
    )
    parser.add_argument(
        "--endpoint", choices=_ENDPOINTS, help="the API the body is for (default: inferred)"
    )
    parser.add_argument(
        "--fallback-encoding",
        metavar="NAME",
        help="encoding for unknown models, e.g. o200k_base (default: error)",
    )
    parser.add_argument(
        "--tokenizer",
        metavar="SPEC",
        help="count with this tokenizer for any model: a tiktoken encoding, server:URL "
        "(asks that server) or hf:PATH (a tokenizer.json)",
    )
    parser.set_defaults(func=run)


def _read_body(source: str) -> Any:
    if source == "-":
        return json.load(sys.stdin)
    with open(source, encoding="utf-8") as handle:
        return json.load(handle)


def run(args: argparse.Namespace) -> int:
    """Count the request named by ``args`` and print the result; return the exit status."""
    from prismq_llmtools.errors import LLMToolsError, UnknownModelError
    from prismq_llmtools.openai.tokenizer import check_tokenizer, count_request_with
    from prismq_llmtools.openai.tokens import count_request

    try:
        body = _read_body(args.request)
    except (OSError, ValueError) as exc:
        print(f"prismq-llmtools count: cannot read {args.request}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.tokenizer is not None:
            estimate = count_request_with(
                body, endpoint=args.endpoint, tokenizer=check_tokenizer(args.tokenizer)
            )
        else:
            estimate = count_request(
                body, endpoint=args.endpoint, fallback_encoding=args.fallback_encoding
            )
    except LLMToolsError as exc:
        hint = (
            " (on the command line: --tokenizer SPEC or --fallback-encoding NAME)"
            if isinstance(exc, UnknownModelError)
            else ""
        )
        print(f"prismq-llmtools count: {exc}{hint}", file=sys.stderr)
        return 1
    if args.as_json:
        report = {
            "model": estimate.model,
            "encoding": estimate.encoding,
            "prompt_tokens": estimate.prompt_tokens,
            "completion_cap": estimate.completion_cap,
            "total_estimate": estimate.total_estimate,
        }
        print(json.dumps(report))
    else:
        print(estimate.prompt_tokens)
    return 0
