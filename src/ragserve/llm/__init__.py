"""Answer generation: the `LLMProvider` protocol (`base.py`) and its implementations.

The offline default is `extractive.ExtractiveAnswerer`; remote chat providers and the
fallback router implement the same protocol, so any of them can stand in for another.
"""
