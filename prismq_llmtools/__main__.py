"""``python -m prismq_llmtools``: the command line."""

import sys

from prismq_llmtools.cli import main

sys.exit(main())
