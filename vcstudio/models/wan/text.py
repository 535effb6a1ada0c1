"""UMT5 prompt embeddings for Wan2.1, computed once per prompt, after which the encoder can go.

Wan conditions on UMT5-XXL's last hidden states over ``max_sequence_length`` (512) tokens,
with the states past the prompt's own tokens set to zero (as WanPipeline pads them). The
encoder is ~5.7B parameters (~11 GB in bf16, 22.7 GB as the diffusers repos store it): a tuning
or editing job encodes the few prompts it needs, then :meth:`PromptEmbeddings.free` drops the
encoder, and later lookups of those prompts still answer from the cache. On CUDA
``offload=True`` instead parks the encoder in host memory between encodes (an unseen prompt
later moves it back for one call).
"""
from __future__ import annotations

import gc
from typing import Optional, Sequence

import torch

from ...errors import InputError

MAX_SEQUENCE_LENGTH = 512  # WanPipeline's default; the I2V cross-attention assumes 512 text tokens


def clean_prompt(text: str) -> str:
    """The text cleaning the Wan pipelines apply (ftfy + HTML unescape + whitespace), through
    diffusers' own function where ftfy is installed, else HTML unescape + whitespace only."""
    try:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        return prompt_clean(text)
    except (ImportError, NameError):  # NameError: diffusers without ftfy
        import html
        import re

        return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


@torch.no_grad()
def encode_umt5(tokenizer, text_encoder, prompts: Sequence[str],
                max_sequence_length: int = MAX_SEQUENCE_LENGTH,
                device: Optional[torch.device] = None) -> torch.Tensor:
    """(N, max_sequence_length, D) float32 UMT5 states, zero past each prompt's tokens."""
    texts = [clean_prompt(p) for p in prompts]
    tok = tokenizer(texts, padding="max_length", max_length=max_sequence_length, truncation=True,
                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    dev = next(text_encoder.parameters()).device
    states = text_encoder(tok.input_ids.to(dev), tok.attention_mask.to(dev)).last_hidden_state
    keep = tok.attention_mask.to(dev).bool().unsqueeze(-1)
    out = torch.where(keep, states, torch.zeros_like(states)).float()
    return out.to(device) if device is not None else out


class PromptEmbeddings:
    """A prompt -> (1, L, D) embedding cache in front of the tokenizer and UMT5 encoder."""

    def __init__(self, tokenizer, text_encoder, device: torch.device,
                 max_sequence_length: int = MAX_SEQUENCE_LENGTH, offload: bool = False) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.device = torch.device(device)
        self.max_sequence_length = int(max_sequence_length)
        self.offload = bool(offload) and self.device.type == "cuda"
        self._cache: dict[str, torch.Tensor] = {}
        if self.offload and text_encoder is not None:
            text_encoder.to("cpu")

    @property
    def freed(self) -> bool:
        return self.text_encoder is None

    def __call__(self, prompts: Sequence[str] | str) -> torch.Tensor:
        """(N, L, D) float32 embeddings on the device; encodes only prompts not seen before."""
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            if self.text_encoder is None:
                raise InputError(f"The text encoder was freed after encoding this job's prompts; "
                                 f"{missing[0]!r} is new. Encode every prompt before freeing it.")
            if self.offload:
                self.text_encoder.to(self.device)
            try:
                emb = encode_umt5(self.tokenizer, self.text_encoder, missing,
                                  self.max_sequence_length, self.device)
            finally:
                if self.offload:
                    self.text_encoder.to("cpu")
                    torch.cuda.empty_cache()
            for p, e in zip(missing, emb):
                self._cache[p] = e[None]
        return torch.cat([self._cache[p] for p in prompts])

    def free(self) -> None:
        """Drop the encoder (the cached embeddings stay): frees ~11 GB at full size."""
        self.text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
