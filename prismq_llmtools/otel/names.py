"""The names the OpenTelemetry export uses: the pinned GenAI conventions', and our own.

Pinned: ``open-telemetry/semantic-conventions-genai`` at commit ``024a4f9`` (status
Development; its stable attributes, ``server.*`` and ``error.type``, are those of
semantic-conventions v1.44.0). Where the conventions name nothing (cost, our cache, retries,
rate-limit waits, budgets), the names are ours, under ``prismq_llmtools.``.
"""

from __future__ import annotations

__all__ = [
    "DURATION_BUCKETS",
    "SCHEMA_URL",
]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"
"""The schema of the stable attributes used (semantic-conventions v1.44.0)."""

# -- the conventions' attributes ------------------------------------------------------------

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOKEN_MODALITY = "gen_ai.token.modality"  # noqa: S105 (an attribute name, not a secret)
OPENAI_API_TYPE = "openai.api.type"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

# -- the conventions' metrics ---------------------------------------------------------------

INFERENCE_DURATION = "gen_ai.client.inference.duration"
INFERENCE_INPUT_TOKENS = "gen_ai.client.inference.usage.input_tokens"
INFERENCE_OUTPUT_TOKENS = "gen_ai.client.inference.usage.output_tokens"
INFERENCE_CACHE_READ_TOKENS = "gen_ai.client.inference.usage.cache_read.input_tokens"
INFERENCE_REASONING_TOKENS = "gen_ai.client.inference.usage.reasoning.output_tokens"

DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""The explicit bucket boundaries the conventions give for inference durations (seconds)."""

# -- ours -----------------------------------------------------------------------------------

SITE = "prismq_llmtools.site"
OPERATION = "prismq_llmtools.operation"
CALL_ID = "prismq_llmtools.call_id"
OUTCOME = "prismq_llmtools.outcome"
COST_USD = "prismq_llmtools.cost_usd"
PRICE_KNOWN = "prismq_llmtools.price_known"
CACHE = "prismq_llmtools.cache"
SAVED_COST_USD = "prismq_llmtools.cache.saved_cost_usd"
ATTEMPTS = "prismq_llmtools.attempts"
RETRIES = "prismq_llmtools.retries"
RATELIMIT_WAIT_S = "prismq_llmtools.ratelimit.wait_s"
RATE_LIMITED = "prismq_llmtools.rate_limited"
USAGE_SOURCE = "prismq_llmtools.usage.source"
USAGE_ESTIMATED = "prismq_llmtools.usage.estimated"
BUDGET_SCOPE = "prismq_llmtools.budget.scope"
BUDGET_LINE = "prismq_llmtools.budget.line"
BUDGET_UNIT = "prismq_llmtools.budget.unit"
DELAY_S = "prismq_llmtools.delay_s"
ATTEMPT = "prismq_llmtools.attempt"

# Span events.
RETRY_EVENT = "prismq_llmtools.retry"
RATELIMIT_WAIT_EVENT = "prismq_llmtools.ratelimit.wait"

# Metrics.
OPERATION_DURATION = "prismq_llmtools.operation.duration"
COST = "prismq_llmtools.cost"
CACHE_HITS = "prismq_llmtools.cache.hits"
CACHE_SAVED_COST = "prismq_llmtools.cache.saved_cost"
RETRIES_METRIC = "prismq_llmtools.retries"
RATELIMIT_WAIT = "prismq_llmtools.ratelimit.wait"
BUDGET_REMAINING = "prismq_llmtools.budget.remaining"

# An operation's own usage (on its INTERNAL span: the conventions' ``gen_ai.usage.*`` stay on
# the inference spans, so that a backend summing them counts each token once).
OP_INPUT_TOKENS = "prismq_llmtools.usage.input_tokens"
OP_OUTPUT_TOKENS = "prismq_llmtools.usage.output_tokens"
OP_CACHE_READ_TOKENS = "prismq_llmtools.usage.cache_read.input_tokens"
OP_REASONING_TOKENS = "prismq_llmtools.usage.reasoning.output_tokens"
