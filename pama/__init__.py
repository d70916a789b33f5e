"""pama-explorer: train LoRA adapters with PAMA across trade-offs, store them, and explore their Pareto fronts."""
__version__ = "0.1.0"
