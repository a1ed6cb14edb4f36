"""The sentence-transformers model as plain PyTorch: BERT, mean pooling, L2 normalisation.

Imported only when the torch backend or an ONNX export needs it: torch costs a second
and a few hundred MB to import, which an ONNX-only process never pays.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel


class MeanPooledEncoder(torch.nn.Module):
    """Token ids and mask in, normalised sentence embeddings out (sentence-transformers'
    Transformer -> Pooling(mean) -> Normalize, as one module so it exports as one graph)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Single-segment inputs: BERT's token types are all zero. Passing them explicitly
        # keeps them out of the exported graph's inputs.
        hidden = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def load_encoder(model_dir: Path, *, attn_implementation: str = "sdpa") -> MeanPooledEncoder:
    """Load the local weights in fp32 on the CPU, in eval mode.

    A local directory with ``local_files_only`` never contacts the Hub, whatever
    ``HF_HUB_OFFLINE`` says (it is read once, when huggingface_hub is imported).
    """
    transformer = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation=attn_implementation
    )
    return MeanPooledEncoder(transformer).eval()


class TorchRunner:
    """Runs the encoder on ``device``; fp16 on CUDA, where it halves the time for no
    measurable retrieval loss on this model."""

    def __init__(self, model_dir: Path, *, device: str, threads: int | None) -> None:
        if threads is not None:
            # Process-wide in torch; only set when asked so an embedding library does not
            # silently retune every other torch user in the process.
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        encoder = load_encoder(model_dir)
        if self.device.type == "cuda":
            encoder = encoder.half()
        self._encoder = encoder.to(self.device)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(self.device)
            mask = torch.from_numpy(attention_mask).to(self.device)
            out = self._encoder(ids, mask)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def export_onnx(model_dir: Path, destination: Path, *, opset: int = 17) -> None:
    """Trace the encoder to ONNX at ``destination`` with dynamic batch and sequence axes.

    The TorchScript exporter is used first: with this torch it is ~5x faster than the
    dynamo exporter, and the dynamo one fails its own down-conversion to opset 17 here
    (it falls back to 18 after logging a traceback). The dynamo exporter stays as the
    fallback for a torch that drops the old one.
    """
    # Eager attention traces to plain ops that every ONNX Runtime build fuses.
    encoder = load_encoder(model_dir, attn_implementation="eager")
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    input_names, output_names = ["input_ids", "attention_mask"], ["embeddings"]
    # The exporters warn about tracing and their own deprecation at length; the result is
    # checked against the module numerically below instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                encoder,
                (ids, mask),
                str(destination),
                opset_version=opset,
                dynamo=False,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "embeddings": {0: "batch"},
                },
                input_names=input_names,
                output_names=output_names,
            )
        except Exception:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
            torch.onnx.export(
                encoder,
                (ids, mask),
                str(destination),
                opset_version=opset,
                dynamo=True,
                external_data=False,  # one self-contained file, so os.replace moves all of it
                dynamic_shapes={
                    "input_ids": {0: batch, 1: sequence},
                    "attention_mask": {0: batch, 1: sequence},
                },
                input_names=input_names,
                output_names=output_names,
            )
    _verify_export(encoder, destination)


def _verify_export(encoder: MeanPooledEncoder, path: Path) -> None:
    """Refuse an export whose output differs from the module's on a shape it was not traced
    with: a trace can bake a shape-dependent branch in as a constant without failing."""
    import onnxruntime as ort

    ids = torch.tensor([[101, *range(2000, 2011), 102], [101, 2023, 2003, 102, *[0] * 9]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    with torch.no_grad():
        expected = encoder(ids, mask).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["embeddings"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    drift = float(np.abs(got - expected).max())
    if drift > 1e-4:
        raise RuntimeError(f"ONNX export of {path.name} disagrees with torch by {drift:.2e}")
