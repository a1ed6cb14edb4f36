"""Embedders: text in, L2-normalised float32 vectors out.

`base.Embedder` is the protocol every implementation satisfies (the in-process
`local.LocalEmbedder`, a remote OpenAI-compatible client, a caching wrapper);
`batcher.MicroBatcher` groups concurrent single-item calls into one batch call.
"""
