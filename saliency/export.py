"""ONNX export of a trained saliency model, verified against onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from saliency.infra.errors import UserError


def export_onnx(model: torch.nn.Module, path: str | Path, size: tuple[int, int], tolerance: float = 1e-4) -> float:
    """Write `path` (dynamic batch, fixed H×W) and return the max |torch − onnxruntime| on a random batch."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs the 'export' extra: pip install 'vidcap[export]'") from None
    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, *size)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["log_density"],
                                dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))
    check = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = model(check).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": check.numpy()})[0]
    error = float(np.abs(got - expected).max())
    if error > tolerance:
        raise UserError(f"{path}: ONNX output differs from PyTorch by {error:.2e} (> {tolerance:.0e})")
    return error
