"""pama-explorer: train LoRA adapters with PAMA across trade-offs, store them, and explore their Pareto fronts."""
import os as _os

# Several torch processes share a small CPU here (the app, a training job, tests). With OpenMP's default
# spin-waiting, a 2-thread process next to a busy one ran a tiny model's generation 30× slower (2.5 s vs 0.08 s
# for 8 tokens); passive waiting removes that. Must be set before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
