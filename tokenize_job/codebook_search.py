"""The nearest-code search, in fp32 and chunked.

The network may run in bf16, but the search always runs in fp32: two codebook entries can be
closer than bf16's resolution, and the argmin must not flip because of it. It is chunked so that
the [rows × codebook] distance matrix stays bounded (8192 codes × 64k rows would be 2 GiB).
"""
from __future__ import annotations

import torch

SEARCH_CHUNK = 4096  # rows of the distance matrix at a time: 4096 × 8192 × 4 B = 128 MiB


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor, chunk: int = SEARCH_CHUNK) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each row of z [N, D], computed in fp32."""
    with torch.no_grad():
        cb = codebook.detach().float()
        cb_sq = cb.pow(2).sum(1)
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], chunk):
            part = z[start:start + chunk].detach().float()
            # ||z||² is the same for every code of a row, so it does not change the argmin
            dist = torch.addmm(cb_sq, part, cb.t(), alpha=-2.0)
            out[start:start + chunk] = dist.argmin(1)
    return out


def nearest_codes_reference(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The straightforward search: full distance matrix, as open-MUSE computes it."""
    z = z.float()
    cb = codebook.float()
    dist = z.pow(2).sum(1, keepdim=True) + cb.pow(2).sum(1)[None] - 2 * z @ cb.t()
    return dist.argmin(1)
