"""The int8 formats against ggml's q8_0 on a trained model's matrices: for every 2-D parameter a
product multiplies whose K is a multiple of 32 (the tied output head of a GPT included, position
embeddings not), the relative error of the weights and of a product with a Gaussian vector,
ggml's figures from its own quantizer (compare.sh builds `qerr`).

    ember train --model gpt --out gpt.safetensors
    python benchmarks/ggml/trained_int8.py gpt.safetensors /path/to/compare-work-dir
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

import ember
from ember import quant

model, work = ember.load_model(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
tmp = tempfile.mkdtemp()
print(f"{'matrix':36s} {'N x K':>9s}  {'q8_0 weight / product':>22s}  {'int8 g32':>19s}  {'int8 per channel':>19s}")
for name, p in model.named_parameters():
    if p.ndim != 2 or p.shape[1] % 32 or "wpe" in name:
        continue
    w = np.ascontiguousarray(p.detach().numpy(), np.float32)
    n, k = w.shape
    x = rng.standard_normal(k).astype(np.float32)
    w.tofile(f"{tmp}/W.f32")
    x.tofile(f"{tmp}/x.f32")
    out = subprocess.run([f"{work}/qerr", f"{tmp}/W.f32", str(n), str(k), f"{tmp}/x.f32"], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"}).stdout
    q8_0 = next(line.split() for line in out.splitlines() if line.startswith("q8_0"))
    exact = w.astype(np.float64) @ x.astype(np.float64)
    cells = [f"{float(q8_0[2]):.3e} / {float(q8_0[4]):.3e}"]
    for form in ({"group_size": 32}, {}):
        qw = quant.quantize_weight(w, 8, **form)
        cells.append(f"{np.linalg.norm(qw.dequantize() - w) / np.linalg.norm(w):.3e} / "
                     f"{np.linalg.norm(qw.matmul(x[None])[0] - exact) / np.linalg.norm(exact):.3e}")
    print(f"{name:36s} {f'{n}x{k}':>9s}  {cells[0]:>22s}  {cells[1]:>19s}  {cells[2]:>19s}")
