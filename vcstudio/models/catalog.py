"""The models vcstudio knows by name, for the model pickers: family, task, download size, and
whether each is in the local Hugging Face cache (``huggingface_hub.scan_cache_dir``: cache reads
only, no network), plus a download with progress events (bytes, rate, ETA) for one that is
not, which a job runs before it loads a model (:func:`fetch`).

Download sizes are what ``from_pretrained`` fetches (the safetensors of each component, not the
repos' extra files). Where the figure comes from is on each entry: the Hub's file listing as
read on huggingface.co when vcstudio added the entry, or, where no listing was at hand, the
components' parameter counts at the precision the repo stores them ("estimate"). A picker shows
them as approximate ("~27.6 GB"); a cached model shows its size on disk instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import CancelledError, ModelNotFoundError
from ..progress import Event, ProgressFn, null_progress

# the files a diffusers pipeline loads: its index, every component's config and safetensors,
# tokenizer files (the Wan repos also hold example images and docs: not fetched)
DIFFUSERS_FILES = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.model", "*/*.txt"]


@dataclass(frozen=True)
class KnownModel:
    id: str  # hub id
    family: str  # "svd" | "ltx" | "wan" | "sd" (the backbone that runs it)
    task: str  # "i2v" | "t2v" | "t2i"
    name: str  # what a picker shows
    download_gb: float
    size_source: str  # where download_gb comes from
    note: str = ""  # one line a picker shows beside it
    community: bool = False  # converted / uploaded by someone other than the model's authors


KNOWN: tuple[KnownModel, ...] = (
    KnownModel("stabilityai/stable-video-diffusion-img2vid", "svd", "i2v",
               "Stable Video Diffusion (14 frames)", 9.0,
               "estimate: U-Net 1.52B + ViT-H/14 0.63B + VAE 0.10B parameters in fp32"),
    KnownModel("stabilityai/stable-video-diffusion-img2vid-xt", "svd", "i2v",
               "Stable Video Diffusion XT (25 frames)", 9.0,
               "estimate: U-Net 1.52B + ViT-H/14 0.63B + VAE 0.10B parameters in fp32"),
    KnownModel("Lightricks/LTX-Video", "ltx", "i2v", "LTX-Video 0.9 (2B)", 14.2,
               "estimate: T5-XXL encoder 4.76B + transformer 1.92B + VAE 0.42B in bf16"),
    KnownModel("weizhou03/Wan2.1-Fun-1.3B-InP-Diffusers", "wan", "i2v",
               "Wan2.1-Fun-1.3B-InP (the VCD paper's backbone)", 27.6,
               "Hub listing: transformer 3.13 GB, text_encoder 22.7 GB (UMT5-XXL, fp32), "
               "image_encoder 1.26 GB, vae 0.51 GB",
               "community conversion (weizhou03) of alibaba-pai/Wan2.1-Fun-1.3B-InP to "
               "diffusers' format, not by alibaba-pai or Wan-AI", community=True),
    KnownModel("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan", "i2v",
               "Wan2.1-I2V-14B-480P (official)", 91.5,
               "Hub listing: transformer 14 shards (~65.8 GB, fp32), text_encoder 22.7 GB; "
               "estimate: image encoder 2.5 GB, VAE 0.5 GB",
               "14B parameters: bf16 weights alone take ~33 GB of GPU memory"),
    KnownModel("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan", "t2v", "Wan2.1-T2V-1.3B (official)",
               28.9, "estimate: transformer 1.42B in fp32 5.7 GB, UMT5-XXL 22.7 GB, VAE 0.5 GB"),
    KnownModel("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", "t2i",
               "Stable Diffusion 1.5", 4.3,
               "estimate: U-Net 0.86B + CLIP text 0.12B + VAE 0.08B parameters in fp32"),
    # the 768 px v-prediction model; its text encoder is OpenCLIP ViT-H/14's text tower with
    # its last layer dropped (23 layers of width 1024: 0.34B parameters)
    KnownModel("stabilityai/stable-diffusion-2-1", "sd", "t2i", "Stable Diffusion 2.1", 5.2,
               "estimate: U-Net 0.87B + OpenCLIP-H text 0.34B + VAE 0.08B parameters in fp32"),
)


# short names a picker, a Compare variant (``dct@sd15``) or a sweep may use for a base model
ALIASES = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
           "sd21": "stabilityai/stable-diffusion-2-1",
           "wan-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
           "wan": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}


def resolve_alias(name: str) -> str:
    """The hub id of an alias (:data:`ALIASES`; "demo" = the embedded demo model's folder); any
    other text (a hub id, a folder) as it is."""
    key = (name or "").strip()
    if key.lower() == "demo":
        from .loading import EMBEDDED_MODEL

        return str(EMBEDDED_MODEL)
    return ALIASES.get(key.lower(), key)


def known(task: Optional[str] = None) -> list[KnownModel]:
    return [m for m in KNOWN if task is None or m.task == task]


def find(model_id: str) -> Optional[KnownModel]:
    return next((m for m in KNOWN if m.id == model_id), None)


def cached_sizes() -> dict[str, int]:
    """{repo id: bytes on disk} of the model repos in the local Hugging Face cache ({} when the
    cache is missing or unreadable)."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        # the cache folder read now, not the one huggingface_hub bound when first imported
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except Exception:  # no cache folder yet, or an unreadable one: nothing cached
        return {}
    return {r.repo_id: int(r.size_on_disk) for r in info.repos if r.repo_type == "model"}


@dataclass
class ModelStatus:
    id: str
    cached: bool  # the weights are on this machine (a local folder, or the cache holds them)
    bytes_on_disk: int
    known: Optional[KnownModel]
    local_folder: bool = False

    def line(self) -> str:
        """One line for a picker: what it is, cached or the download it needs."""
        k = self.known
        what = f"{k.name}" if k else self.id
        if k and k.community:
            what += f" — {k.note}"
        elif k and k.note:
            what += f" ({k.note})"
        if self.local_folder:
            return f"{self.id}: a local folder."
        if self.cached:
            return f"{what}: cached ({_size(self.bytes_on_disk, 1)} on disk)."
        size = (f"~{k.download_gb:g} GB download on first use ({k.size_source})" if k
                else "not in the local cache; downloaded on first use (size unknown)")
        part = (f"; {_size(self.bytes_on_disk, 1)} of it cached" if self.bytes_on_disk
                else "")
        return f"{what}: {size}{part}."


def status(model_id: str, sizes: Optional[dict[str, int]] = None) -> ModelStatus:
    """Whether ``model_id`` is at hand (a folder, or cached: a known Stable Diffusion model's
    index, configs and weights, which loading.py reads; another known model at least 90% of its
    download on disk; else its model_index.json) -- cache reads only."""
    model_id = (model_id or "").strip()
    k = find(model_id)
    if model_id and Path(model_id).expanduser().is_dir():
        return ModelStatus(model_id, True, 0, k, local_folder=True)
    sizes = cached_sizes() if sizes is None else sizes
    on_disk = sizes.get(model_id, 0)
    if k is not None and k.family == "sd":  # the files the SD loader reads (same names on 1.x/2.x)
        from .loading import default_model_cached

        ok = default_model_cached(model_id)
    elif k is not None:
        ok = on_disk >= 0.9 * k.download_gb * 1e9
    else:
        from .hub_access import hub_file_cached

        try:
            ok = bool(model_id) and hub_file_cached(model_id, "model_index.json")
        except Exception:  # not a repo id
            ok = False
    return ModelStatus(model_id, ok, on_disk, k)


def choices(task: str = "i2v") -> list[tuple[str, str]]:
    """(label, hub id) for a dropdown: name, family, cached or the download size."""
    sizes = cached_sizes()
    out = []
    for m in known(task):
        st = status(m.id, sizes)
        tag = "cached" if st.cached else f"~{m.download_gb:g} GB download"
        extra = ", community conversion" if m.community else ""
        out.append((f"{m.name} [{m.family}{extra}; {tag}]", m.id))
    return out


def fetch(model_id: str, progress: ProgressFn = null_progress, token=None,
          cancel=None) -> Optional[Path]:
    """What a job calls before it loads a base model: :func:`download` where the model is a
    hub id not at hand yet (cache reads decide; a cached model costs no network call)."""
    model_id = resolve_alias(model_id or "")
    if not model_id or "/" not in model_id or status(model_id).cached:
        return None
    return download(model_id, progress, token, cancel)


def download(model_id: str, progress: ProgressFn = null_progress, token=None,
             cancel=None) -> Optional[Path]:
    """Fetch a hub model's pipeline files into the local cache (only the missing ones), with
    ``download`` progress events: bytes (MB as step/total, the message "1.2 / 4.3 GB at
    35 MB/s, ETA 1 min 30 s", ``eta`` in seconds) from huggingface_hub's byte bars, or files
    where only its files bar moves. Nothing for a local folder, and nothing offline: the loader
    then answers from the cache, or says in one line what to download. ``cancel`` (a
    CancelToken) stops it at the next progress report; the files fetched so far stay cached."""
    st = status(model_id)
    if st.local_folder or not model_id or "/" not in model_id:
        return None
    from huggingface_hub import snapshot_download

    from .hub_access import hub_online

    if not hub_online():
        return None
    gb = f" (~{st.known.download_gb:g} GB in all)" if st.known else ""
    meter = ByteMeter(model_id, progress, _missing_bytes(model_id, token), gb, cancel=cancel)
    from tqdm.auto import tqdm

    class Bar(tqdm):  # every bar huggingface_hub drives (bytes and files), as progress events
        def __init__(self, *a, **kw):
            import io

            kw.update(file=io.StringIO(), mininterval=0.5)
            kw.pop("name", None)
            super().__init__(*a, **kw)

        def display(self, msg=None, pos=None):
            meter.report(self)
            return True

    progress(Event(0, 1, f"downloading {model_id}{gb}", stage="download"))
    try:
        return Path(snapshot_download(model_id, allow_patterns=DIFFUSERS_FILES, tqdm_class=Bar,
                                      token=token))
    except CancelledError:
        raise
    except Exception as e:
        if cancel is not None and cancel.cancelled:  # a worker thread's stop, re-wrapped
            cancel.check()
        raise ModelNotFoundError(f"Downloading {model_id} failed ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160]}); check the id and network.") \
            from None


def _missing_bytes(model_id: str, token=None) -> Optional[int]:
    """Bytes the download will fetch (huggingface_hub's dry run over the same files: the ones
    not cached yet), or None where the listing cannot be had (the byte bars' own totals, which
    grow as files start, stand in)."""
    try:
        from huggingface_hub import snapshot_download

        files = snapshot_download(model_id, allow_patterns=DIFFUSERS_FILES, token=token,
                                  dry_run=True)
        return sum(int(f.file_size or 0) for f in files if f.will_download)
    except Exception:  # an older client, or the listing failed: the download says why
        return None


class ByteMeter:
    """huggingface_hub's progress bars as one stream of download events. Its byte bars
    (``unit="B"``: bytes received and bytes written) give the bytes done, the largest of them;
    the total is the dry run's (else the bars' own); the rate and ETA are measured from the
    first byte. Its files bar is reported only while no byte has been counted."""

    def __init__(self, model_id: str, progress: ProgressFn, total: Optional[int] = None,
                 note: str = "", clock=None, cancel=None) -> None:
        import time

        self.model_id, self.progress, self.total, self.note = model_id, progress, total, note
        self.cancel = cancel
        self.clock = clock or time.monotonic
        self.bars: list = []
        self.t0: Optional[float] = None
        self.first = 0
        import threading

        self.lock = threading.Lock()  # the bars move from huggingface_hub's worker threads

    def report(self, bar) -> None:
        if self.cancel is not None:
            self.cancel.check()
        with self.lock:
            self._report(bar)

    def _report(self, bar) -> None:
        if not any(b is bar for b in self.bars):  # tqdm's == compares bar positions
            self.bars.append(bar)
        byte_bars = [b for b in self.bars if getattr(b, "unit", "") == "B"]
        done = max([int(b.n or 0) for b in byte_bars], default=0)
        if done <= 0:
            if getattr(bar, "unit", "") != "B":
                total = int(bar.total or 0)
                n = int(bar.n)
                self.progress(Event(min(n, total) if total else n, total,
                                    f"downloading {self.model_id}: {n}/{total} files{self.note}",
                                    stage="download"))
            return
        now = self.clock()
        if self.t0 is None:  # the first bytes seen: the rate counts from here
            self.t0, self.first = now, done
        total = max(self.total or max(int(b.total or 0) for b in byte_bars), done)
        self.progress(self.event(done, total, done - self.first, now - self.t0))

    def event(self, done: int, total: int, moved: int, seconds: float) -> Event:
        """The event of ``done`` of ``total`` bytes, ``moved`` of them in the last
        ``seconds``."""
        from ..calibration import format_seconds

        rate = moved / seconds if seconds > 0 and moved > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        text = f"downloading {self.model_id}: {_size(done)} / {_size(total)}"
        if eta is not None:
            text += f" at {rate / 1e6:.1f} MB/s, ETA {format_seconds(eta)}"
        return Event(done // 10**6, max(1, total // 10**6), text, stage="download", eta=eta)


def _size(n: int, digits: int = 2) -> str:
    """Bytes as GB (MB below one GB) with ``digits`` decimals."""
    return f"{n / 1e9:.{digits}f} GB" if n >= 1e9 else f"{n / 1e6:.{digits}f} MB"
