"""`python -m llm_tiny.bench`: the model benchmark (llm_tiny.bench.model)."""

import sys

from llm_tiny.bench.model import main

sys.exit(main())
