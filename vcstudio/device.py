"""Device and precision policy (DESIGN: CUDA + bf16 autocast there, fp32 on CPU)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = no autocast (fp32)
    frozen_dtype: torch.dtype  # dtype of frozen modules (VAE, text encoder, feature nets)
    use_grad_scaler: bool

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def precision_for(device: torch.device, mixed_precision: str = "auto") -> Precision:
    """bf16 autocast on CUDA (fp16 + GradScaler only where bf16 is unsupported); fp32 on CPU."""
    if device.type != "cuda" or mixed_precision == "no":
        return Precision(device, None, torch.float32, False)
    bf16_ok = torch.cuda.is_bf16_supported()
    if mixed_precision == "fp16" or not bf16_ok:
        return Precision(device, torch.float16, torch.float16, True)
    return Precision(device, torch.bfloat16, torch.bfloat16, False)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a timer's end on CUDA); nothing elsewhere."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
