"""``VideoEditPipeline``: vcstudio's inflated video model as a diffusers ``DiffusionPipeline``.

    pipe = VideoEditPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    pipe.load_tuned("path/to/run")            # or "hf://user/repo"
    latents = pipe.inversion_latents(50)      # the tuned clip, DDIM-inverted (Tune-A-Video)
    video = pipe("a Porsche on the beach", latents=latents, num_inference_steps=50).frames[0]

Components are the base's (``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``) plus ``unet``,
the inflated video model: :class:`VideoUNet`, a thin module over vcstudio's
:class:`~vcstudio.models.inflate.VideoDenoiser` with diffusers' video-U-Net convention
(``unet(sample (B, C, F, H, W), timestep, encoder_hidden_states (B, tokens, dim)).sample``). The
scheduler is DDIM (Tune-A-Video's) and any diffusers scheduler swaps in. The loop is
:func:`vcstudio.pipelines.edit.sample.run_steps`, the one vcstudio samples with; the edit job
samples through this pipeline.

Where it follows diffusers and where it does not:

* ``guidance_scale``: classifier-free guidance runs whenever the scale is not 1 (0 gives the
  unconditional prediction, as the CFG formula says); diffusers' SD pipelines skip CFG at <= 1.
  CFG is judged per step from the batch of ``prompt_embeds`` (2B rows = negative + positive), so
  callbacks that cut CFG by slicing them (diffusers' ``SDCFGCutoffCallback``) work.
* ``eta`` > 0 with a scheduler whose ``step`` takes no ``eta`` is an error, not ignored.
* ``save_pretrained`` is refused: a tuned pipeline is a base model plus a run folder; keep those.
* ``enable_vae_slicing`` / ``disable_vae_slicing`` exist here (diffusers 0.42 moved them to the
  VAE: ``pipe.vae.enable_slicing()``).
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput

from ...config import EditConfig
from ...errors import InputError
from ...models.inflate import VideoDenoiser
from ...models.loading import BaseModel
from ...settings import check

DEFAULT_FRAMES = 24  # Tune-A-Video's clip length; a tuned run defaults to its own clip


@dataclass
class VideoUNetOutput(BaseOutput):
    """``sample``: (B, C, F, H, W), like diffusers' ``UNet3DConditionOutput``."""

    sample: torch.Tensor


class VideoUNet(nn.Module):
    """``pipe.unet``: diffusers' video-U-Net call convention over a VideoDenoiser.

    ``encoder_hidden_states`` are per video (B, tokens, dim); the denoiser repeats them over the
    frames itself (either temporal route, also diffusers' UNetMotionModel, which wants them per
    frame). APLA's VGT and other ``perturb`` modules are part of the prediction.
    """

    def __init__(self, denoiser: VideoDenoiser) -> None:
        super().__init__()
        self.denoiser = denoiser

    @property
    def config(self):
        return self.denoiser.config

    @property
    def dtype(self) -> torch.dtype:  # the frozen weights' dtype (trainables stay fp32)
        return self.denoiser.unet.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.denoiser.unet.conv_in.weight.device

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                return_dict: bool = True):
        if sample.ndim != 5:
            raise ValueError(f"VideoUNet expects sample (B, C, F, H, W), got {tuple(sample.shape)}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != sample.shape[0]:
            raise ValueError("encoder_hidden_states must be (B, tokens, dim) with the sample's B "
                             f"= {sample.shape[0]}, got {tuple(encoder_hidden_states.shape)}")
        out = self.denoiser(sample, timestep, encoder_hidden_states)
        return VideoUNetOutput(sample=out) if return_dict else (out,)


@dataclass
class VideoEditPipelineOutput(BaseOutput):
    """``frames[i]``: video i -- (F, H, W, 3) floats in [0, 1] (``np``), (F, 3, H, W) (``pt``),
    a list of PIL images (``pil``), or the latents (B, C, F, h, w) with ``latent``."""

    frames: Union[np.ndarray, torch.Tensor, list]


class _UNetCall:
    """``model(x, t, e) -> eps`` through ``pipe.unet`` (so offload hooks see the call)."""

    def __init__(self, unet: VideoUNet) -> None:
        self.unet = unet

    def __call__(self, x, t, e):
        return self.unet(x, t, e).sample


class VideoEditPipeline(DiffusionPipeline):
    """One-shot-tuned video editing (Tune-A-Video, DCT, APLA runs) as a diffusers pipeline."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    # + "pred_original_sample": the scheduler's predicted x0 of the step (read-only; None where
    # the scheduler reports none), what the edit job's streamed previews decode
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds",
                               "pred_original_sample"]

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler) -> None:
        """``unet``: a :class:`VideoUNet`, a VideoDenoiser, or a 2-D ``UNet2DConditionModel``
        (inflated here: vcstudio's temporal route, untuned)."""
        super().__init__()
        from diffusers.video_processor import VideoProcessor

        base_unet = None
        if not isinstance(unet, (VideoUNet, VideoDenoiser)):
            base_unet, unet = unet, VideoDenoiser(unet, copy_unet=True).eval()
        if isinstance(unet, VideoDenoiser):
            unet = VideoUNet(unet)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.video_processor = VideoProcessor(do_resize=False,
                                              vae_scale_factor=self.vae_scale_factor)
        self._base: Optional[BaseModel] = None
        if base_unet is not None:  # built from parts: a base the runs can be loaded onto
            from ...models.loading import base_from_parts

            self._base = base_from_parts("(in memory)", base_unet, vae, text_encoder, tokenizer,
                                         dict(scheduler.config), base_unet.device, base_unet.dtype)
        self._tuned = None  # the TunedModel load_tuned attached
        self._mixed_precision = "auto"
        size = int(self.unet.config.sample_size) * self.vae_scale_factor
        self._clip = (DEFAULT_FRAMES, size, size)  # (frames, height, width) defaults
        self._guidance_scale = 7.5
        self._num_timesteps = 0
        self._interrupt = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Optional[str] = None, *,
                        device=None, dtype: Optional[torch.dtype] = None,
                        torch_dtype: Optional[torch.dtype] = None, mixed_precision: str = "auto",
                        temporal: str = "vcstudio", motion_adapter: str = "",
                        cache=None) -> "VideoEditPipeline":
        """A base text-to-image model (hub id, diffusers folder, single file; ``None`` = vcstudio's
        default base, models/loading.py) inflated to video, untuned. A Tune-A-Video output
        folder loads tuned: its own components, its UNet3D's weights (runs/convert.py).

        Loads on the CPU in fp32 unless told otherwise (move it with ``.to("cuda")`` or use
        ``enable_model_cpu_offload``). ``temporal="animatediff"`` builds the video model with
        diffusers' UNetMotionModel and ``motion_adapter`` (hub id or folder; "" = fresh, identity
        motion modules). The 2-D base U-Net is kept (where it was loaded) to rebuild the video
        model when :meth:`load_tuned` attaches a run.
        """
        from ...config import TuneConfig
        from ...device import precision_for
        from ...models.cache import ModelCache
        from ...models.loading import load_base
        from .video_model import build_video_model

        from ...models.tav import is_tav_folder

        dev = torch.device(device) if device is not None else torch.device("cpu")
        cache = cache if cache is not None else ModelCache()
        base = load_base(pretrained_model_name_or_path, dev, dtype or torch_dtype or torch.float32,
                         cache)
        if pretrained_model_name_or_path and is_tav_folder(pretrained_model_name_or_path):
            # a Tune-A-Video output folder: its own base, tuned (its run converted once)
            from ...runs.convert import tav_run

            run = tav_run(pretrained_model_name_or_path, cache=cache, base=base)
            prec = precision_for(dev, mixed_precision)
            cfg = TuneConfig(model=base.model_id, mixed_precision=mixed_precision)
            model, _, _ = build_video_model(base, cfg, prec)
            return cls._assemble(base, model.eval(), mixed_precision).load_tuned(run)
        prec = precision_for(dev, mixed_precision)
        cfg = TuneConfig(model=base.model_id, temporal=temporal, motion_adapter=motion_adapter,
                         mixed_precision=mixed_precision)
        model, _, _ = build_video_model(base, cfg, prec)
        pipe = cls._assemble(base, model.eval(), mixed_precision)
        return pipe

    @classmethod
    def from_tuned(cls, tuned) -> "VideoEditPipeline":
        """A pipeline over an already loaded :class:`~vcstudio.pipelines.tune.loop.TunedModel`,
        sharing its modules (the edit job samples through this)."""
        pipe = cls._assemble(tuned.base, tuned.model, tuned.cfg.mixed_precision)
        pipe._attach(tuned)
        pipe.set_progress_bar_config(disable=True)  # vcstudio reports progress by callback
        return pipe

    @classmethod
    def _assemble(cls, base: BaseModel, model: VideoDenoiser, mixed_precision: str):
        pipe = cls(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                   unet=VideoUNet(model),
                   scheduler=DDIMScheduler.from_config(base.scheduler_config))
        pipe._base = base
        pipe._mixed_precision = mixed_precision
        pipe.register_to_config(_name_or_path=base.model_id)
        return pipe

    def _attach(self, tuned) -> None:
        self._tuned = tuned
        meta = tuned.run.meta() if tuned.run is not None else {}
        d = tuned.cfg.data
        self._clip = (int(meta.get("n_frames", d.n_frames)), int(meta.get("height", d.height)),
                      int(meta.get("width", d.width)))

    def load_tuned(self, run: str | Path) -> "VideoEditPipeline":
        """Attach a tuned run: a run folder, ``hf://user/repo`` or ``user/repo`` (downloaded
        with huggingface_hub's snapshot_download). Its base fingerprint must match this base."""
        from ...device import precision_for
        from ...runs.source import resolve_run
        from ...runs.convert import prepare_run
        from .tuned import tuned_on_base

        if self._base is None:
            raise InputError("This pipeline has no base model to load a run onto; build it with "
                             "VideoEditPipeline.from_pretrained(base).")
        rf = prepare_run(resolve_run(run), base=self._base)
        offloaded = bool(getattr(self, "_all_hooks", None))
        device = self._execution_device
        if offloaded:
            self.remove_all_hooks()
        tuned = tuned_on_base(rf, self._base, precision_for(device, rf.config().mixed_precision))
        self.unet = VideoUNet(tuned.model)
        self._mixed_precision = tuned.cfg.mixed_precision
        self._attach(tuned)
        if offloaded:
            self.enable_model_cpu_offload(device=self._offload_device)
        return self

    def save_pretrained(self, *args, **kwargs):
        raise InputError("A VideoEditPipeline is a base model plus a tuned run: keep the run "
                         "folder (or `vcstudio push` it) and the base; there is nothing else to "
                         "save.")

    # ------------------------------------------------------------------ switches and state
    def enable_vae_slicing(self) -> None:
        """Decode the frames of a chunk one at a time (less memory, same frames)."""
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        self.vae.disable_slicing()

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        from ...config import guided_passes

        return guided_passes(self._guidance_scale) == 2

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def _parts(self, device: torch.device) -> BaseModel:
        """The base as this pipeline holds it now (components may have moved or been swapped)."""
        return dataclasses.replace(self._base, vae=self.vae, text_encoder=self.text_encoder,
                                   tokenizer=self.tokenizer, device=device, dtype=self.vae.dtype)

    @torch.no_grad()
    def inversion_latents(self, num_inference_steps: int = 50,
                          inversion_prompt: Optional[str] = None,
                          prompt: Optional[str] = None) -> torch.Tensor:
        """The attached run's clip, DDIM-inverted with that many steps under ``inversion_prompt``
        ("" = the empty prompt, as Tune-A-Video; "source" = the tuning prompt; "target" =
        ``prompt``, the edit's; None = the run's setting), read from the run folder when it
        holds them: pass as ``latents`` to edit."""
        from .tuned import inversion_latents

        if self._tuned is None:
            raise InputError("No tuned run attached: call pipe.load_tuned(run) first.")
        device = self._execution_device
        tuned = dataclasses.replace(self._tuned, base=self._parts(device),
                                    model=_UNetCall(self.unet))
        return inversion_latents(tuned, int(num_inference_steps), prompt=inversion_prompt,
                                 target=prompt)

    # ------------------------------------------------------------------ sampling
    def _check_call(self, prompt, prompt_embeds, steps: int, guidance: float, eta: float,
                    tensor_inputs) -> None:
        if (prompt is None) == (prompt_embeds is None):
            raise InputError("Give either prompt or prompt_embeds (one of them).")
        if prompt is not None:
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            if not texts or any(not isinstance(p, str) or not p.strip() for p in texts):
                raise InputError("The prompt is empty: describe what the video should show.")
        # an edit's own ranges (config.EditConfig), named as diffusers' arguments are
        check(EditConfig, "steps", label="num_inference_steps", value=steps)
        check(EditConfig, "guidance", label="guidance_scale", value=guidance)
        if eta < 0:
            raise InputError(f"eta must be >= 0, got {eta}.")
        bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise InputError(f"callback_on_step_end_tensor_inputs {bad} are not among "
                             f"{self._callback_tensor_inputs}.")

    def _step_kwargs(self, generator, eta: float) -> dict:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kw = {}
        if "eta" in params:
            kw["eta"] = eta
        elif eta:
            raise InputError(f"{type(self.scheduler).__name__} takes no eta; use eta=0 or DDIM.")
        if "generator" in params:
            kw["generator"] = generator
        return kw

    def _prepare_latents(self, latents, batch: int, num_frames, height, width, generator,
                         device) -> torch.Tensor:
        c = int(self.unet.config.in_channels)
        s = self.vae_scale_factor
        if latents is not None:
            if latents.ndim != 5 or latents.shape[1] != c:
                raise InputError(f"latents must be (B, {c}, frames, height/{s}, width/{s}), got "
                                 f"{tuple(latents.shape)}.")
            b, _, f, h, w = latents.shape
            for name, want, got in (("num_frames", num_frames, f), ("height", height, h * s),
                                    ("width", width, w * s), ("batch", batch, b)):
                if want is not None and want != got:
                    raise InputError(f"{name} {want} does not match the latents' {got}.")
            return latents.to(device=device, dtype=torch.float32)
        f0, h0, w0 = self._clip
        f, h, w = num_frames or f0, height or h0, width or w0
        if f < 1 or h % s or w % s or h < s or w < s:
            raise InputError(f"Use at least 1 frame and a height and width that are multiples "
                             f"of {s}; got {f} frames at {w}x{h}.")
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor((batch, c, f, h // s, w // s), generator=generator, device=device,
                            dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, prompt: Union[str, list[str], None] = None,
                 negative_prompt: Union[str, list[str], None] = None,
                 num_frames: Optional[int] = None, height: Optional[int] = None,
                 width: Optional[int] = None, num_inference_steps: int = 50,
                 guidance_scale: float = 7.5,
                 generator: Union[torch.Generator, list[torch.Generator], None] = None,
                 latents: Optional[torch.Tensor] = None,
                 prompt_embeds: Optional[torch.Tensor] = None,
                 negative_prompt_embeds: Optional[torch.Tensor] = None, eta: float = 0.0,
                 output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Optional[Callable[..., dict[str, Any]]] = None,
                 callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006
                 control=None):
        """Generate videos: ``.frames[0]`` is the first one (see :class:`VideoEditPipelineOutput`).

        ``latents`` (B, C, F, h, w) start the sampling (e.g. :meth:`inversion_latents`; they
        fix frames and size); otherwise noise of ``num_frames`` at ``height`` x ``width`` (default
        the tuned clip's) is drawn from ``generator``. ``callback_on_step_end(pipe, i, t,
        tensors) -> tensors`` follows diffusers: it sees and may replace ``latents``,
        ``prompt_embeds`` (negative rows first under CFG) and ``negative_prompt_embeds``.
        ``control``: a :class:`~vcstudio.control.models.StructureControl` (ControlNet /
        T2I-Adapter residuals per frame, its start/end read against this call's timesteps).
        """
        from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

        from ...device import precision_for
        from ...models.encode import decode_latents, encode_prompts
        from .sample import run_steps

        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self._check_call(prompt, prompt_embeds, num_inference_steps, guidance_scale, eta,
                         callback_on_step_end_tensor_inputs)
        if output_type not in ("pil", "np", "pt", "latent"):
            raise InputError(f"output_type must be pil, np, pt or latent, not {output_type!r}.")
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        device = self._execution_device
        parts = self._parts(device)

        # prompts -> embeddings (B, 77, D); CFG batches negative rows first
        if prompt_embeds is None:
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = encode_prompts(parts, texts)
        prompt_embeds = prompt_embeds.to(device)
        batch = prompt_embeds.shape[0]
        if self.do_classifier_free_guidance:
            if negative_prompt_embeds is None:
                neg = negative_prompt if negative_prompt is not None else ""
                negs = [neg] * batch if isinstance(neg, str) else list(neg)
                if len(negs) != batch:
                    raise InputError(f"Give one negative prompt or {batch}, not {len(negs)}.")
                negative_prompt_embeds = encode_prompts(parts, negs)
            negative_prompt_embeds = negative_prompt_embeds.to(device)
            embeds = torch.cat([negative_prompt_embeds.expand(batch, -1, -1), prompt_embeds])
        else:
            embeds = prompt_embeds

        self.scheduler.set_timesteps(int(num_inference_steps), device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        x = self._prepare_latents(latents, batch, num_frames, height, width, generator, device)
        sigma = self.scheduler.init_noise_sigma
        if float(sigma) != 1.0:
            x = x * sigma
        step_kwargs = self._step_kwargs(generator, eta)
        state = {"prompt_embeds": embeds, "negative_prompt_embeds": negative_prompt_embeds}
        x0 = {"pred_original_sample": None}

        def predict(lat: torch.Tensor, t) -> torch.Tensor:
            e = state["prompt_embeds"]
            cfg = e.shape[0] == 2 * lat.shape[0]
            inp = torch.cat([lat, lat]) if cfg else lat
            inp = self.scheduler.scale_model_input(inp, t)
            out = self.unet(inp, t, encoder_hidden_states=e).sample.float()
            if not cfg:
                return out
            u, c = out.chunk(2)
            return u + self._guidance_scale * (c - u)

        with self.progress_bar(total=len(timesteps)) as bar:
            def on_step_end(i: int, t, lat: torch.Tensor) -> torch.Tensor:
                if callback_on_step_end is not None:
                    tensors = {"latents": lat, **state, **x0}
                    out = callback_on_step_end(self, i, t, {k: tensors[k] for k in
                                                           callback_on_step_end_tensor_inputs})
                    lat = out.pop("latents", lat)
                    for k in ("prompt_embeds", "negative_prompt_embeds"):
                        state[k] = out.pop(k, state[k])
                bar.update()
                return lat

            prec = precision_for(device, self._mixed_precision)
            if control is not None:
                control.set_timesteps(timesteps)
            with self.unet.denoiser.controlled(control):
                x = run_steps(self.scheduler, timesteps, x, predict, step_kwargs,
                              autocast=prec.autocast(), on_step_end=on_step_end,
                              stop=lambda: self._interrupt,
                              on_x0=lambda i, z: x0.__setitem__("pred_original_sample", z))

        if output_type == "latent":
            video = x
        else:
            video = self.video_processor.postprocess_video(decode_latents(parts, x),
                                                           output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return VideoEditPipelineOutput(frames=video)


__all__ = ["VideoEditPipeline", "VideoEditPipelineOutput", "VideoUNet", "VideoUNetOutput"]
