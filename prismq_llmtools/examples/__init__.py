"""Examples that ship with the package: the decorated pipeline ``prismq-llmtools demo`` runs."""
