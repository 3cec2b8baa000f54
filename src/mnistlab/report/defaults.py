"""The report's default sizes, in a module of their own so the command line can show them in
``--help`` without importing the study (torch, matplotlib, scipy)."""

from __future__ import annotations

MODELS = ("fc", "cnn")
# 3 seeds keep `make run` near 10 minutes on a 2-core CPU (the seed CNN: about 1.5-2 min per
# seed in bf16) while still giving a t-interval (2 degrees of freedom).
DEFAULT_SEEDS = 3
QUICK_LIMIT = 5_000          # --quick: training images per model
QUICK_LOOP_STEPS = 300       # --quick: custom-loop iterations (the full pass is 5,000)
