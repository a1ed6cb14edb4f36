"""Test helpers that ship with the library, like httpx's `MockTransport`.

`ragserve.testing.fake_llm.FakeLLMServer` is a real HTTP server speaking the OpenAI chat
completions and Anthropic Messages protocols, scripted per test, so providers and the
router are tested through the official SDKs over a real socket rather than with mocks.

The package imports nothing itself, so `python -m ragserve.testing.fake_llm` runs the
module once, as `__main__`, instead of after an eager import.
"""
