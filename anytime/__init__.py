"""Anytime: train and serve reasoners that give their best answer at any token budget.

This package is the torch-free core shared by every service: settings, logging, queue names, the
synthetic tasks and the CLI entry point. Modules that need torch (the BRPO tensors, the tiny model)
import it themselves, so `import anytime` stays light enough for the API and the verifier.
"""

__version__ = "0.1.0"
