"""CLI of the toy world: ``vcstudio toyworld {train,eval,examples}``.

Wiring in vcstudio/cli.py: ``add_toyworld_args(sub.add_parser("toyworld"))`` and dispatch to
``run_toyworld(args)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

from .train import ModelSizes, ToyTrainConfig


def add_toyworld_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="toyworld_action", required=True)
    t = sub.add_parser("train", help="train the embedded demo model (VAE, CLIP, U-Net) on "
                                     "the CPU, in resumable chunks")
    t.add_argument("--out", default="assets/toy-sd", help="diffusers folder to write")
    t.add_argument("--clip-out", default="assets/toy-clip", help="toy CLIP folder to write")
    t.add_argument("--work", default="", help="checkpoint folder (default: the data folder's "
                                             "toyworld-train)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run the work folder holds (from its last checkpoint)")
    t.add_argument("--restart-unet", action="store_true",
                   help="train a new U-Net from step 0 on the work folder's VAE, CLIP and "
                        "encoded set (the old U-Net's chunks leave the CPU sum); then --resume")
    t.add_argument("--init-from", nargs=2, metavar=("MODEL", "CLIP"), default=None,
                   help="start a new --work folder from a finished demo model's VAE and toy "
                        "CLIP (e.g. assets/toy-sd assets/toy-clip): it encodes the training "
                        "set and trains a new U-Net; the chunks that trained that VAE and CLIP "
                        "count in the CPU sum")
    t.add_argument("--chunk-minutes", type=float, default=None,
                   help="stop (checkpointed) after this many minutes; --resume continues")
    t.add_argument("--max-steps", type=int, default=None,
                   help="stop (checkpointed) after this many optimizer steps (tests)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's choice)")
    t.add_argument("--workers", type=int, default=1,
                   help="data-parallel processes of one thread each (2 on a 2-core CPU: "
                        "about 1.5x the steps per second of one process with 2 threads)")
    for phase, d in (("vae", ToyTrainConfig.vae_steps), ("clip", ToyTrainConfig.clip_steps),
                     ("unet", ToyTrainConfig.unet_steps)):
        t.add_argument(f"--{phase}-steps", type=int, default=d)
    t.add_argument("--unet-object-weight", type=float, default=ToyTrainConfig.unet_object_weight,
                   help="extra loss weight of the latent cells the object touches (0 = none)")
    t.add_argument("--unet-focus-share", type=float, default=ToyTrainConfig.unet_focus_share,
                   help="share of the U-Net's timesteps drawn from 400..999, where the shape is "
                        "decided (0 = uniform)")
    t.add_argument("--unet-lr", type=float, default=ToyTrainConfig.unet_lr,
                   help="the U-Net's peak learning rate (a finished run given more --unet-steps "
                        "warm-restarts to it: a low one continues gently)")
    t.add_argument("--text-lr", type=float, default=ToyTrainConfig.text_lr,
                   help="train the text encoder with the U-Net at this peak learning rate "
                        "(0 = frozen: the toy CLIP's text tower, as SD keeps its encoder)")
    t.add_argument("--unet-text-in-time", action="store_true",
                   help="the pooled caption joins the U-Net's timestep embedding (GLIDE/ADM "
                        "style): better shapes, edits that keep the motion worse; off in the "
                        "shipped model")
    t.add_argument("--dataset", type=int, default=ToyTrainConfig.dataset,
                   help="training scenes encoded once for the U-Net")
    t.add_argument("--tiny", action="store_true", help="tiny architecture (smoke tests)")
    e = sub.add_parser("eval", help="acceptance evaluation on held-out captions")
    e.add_argument("--model", default="assets/toy-sd")
    e.add_argument("--clip", default="assets/toy-clip")
    e.add_argument("--out", default=None, help="folder for eval.json and a sample grid")
    e.add_argument("--n", type=int, default=200)
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--guidance", type=float, default=5.0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default=None)
    x = sub.add_parser("examples", help="write the app's example clips + prompts.json")
    x.add_argument("--out", default="assets/examples")
    x.add_argument("--size", type=int, default=64)
    x.add_argument("--frames", type=int, default=8)
    return parser


def train_config_from_args(args: argparse.Namespace) -> ToyTrainConfig:
    return ToyTrainConfig(out=args.out, clip_out=args.clip_out, work=args.work,
                          seed=args.seed, threads=args.threads, workers=args.workers,
                          vae_steps=args.vae_steps,
                          clip_steps=args.clip_steps, unet_steps=args.unet_steps,
                          dataset=args.dataset, unet_object_weight=args.unet_object_weight,
                          unet_focus_share=args.unet_focus_share, unet_lr=args.unet_lr,
                          text_lr=args.text_lr,
                          sizes=dataclasses.replace(
                              ModelSizes.tiny() if args.tiny else ModelSizes(),
                              unet_text_in_time=args.unet_text_in_time))


def run_toyworld(args: argparse.Namespace) -> int:
    from ..progress import TqdmProgress

    if args.toyworld_action == "train":
        from .train import train_toyworld

        cfg = train_config_from_args(args)
        res = train_toyworld(cfg, TqdmProgress(), resume=args.resume,
                             max_minutes=args.chunk_minutes, max_steps=args.max_steps,
                             restart_unet=args.restart_unet, init_from=args.init_from)
        log = res.log
        if not res.done:
            print(f"paused at {res.phase} step {res.step}; continue with --resume "
                  f"(CPU so far {log.get('cpu_seconds')} s)")
            return 0
        print(json.dumps({k: log.get(k) for k in ("cpu_seconds", "wall_seconds", "final_loss",
                                                  "scaling_factor", "mb", "eval")}, indent=1))
        return 0
    if args.toyworld_action == "eval":
        from .evaluate import run_evaluation

        res = run_evaluation(args.model, args.clip, args.out, args.n, args.steps, args.guidance,
                             args.seed, args.device, TqdmProgress())
        print(json.dumps(res, indent=1))
        return 0
    if args.toyworld_action == "examples":
        from .examples import write_examples

        print(write_examples(args.out, args.size, args.frames))
        return 0
    raise AssertionError(args.toyworld_action)


def main(argv=None) -> int:
    """``python -m vcstudio.toyworld.command ...`` until vcstudio/cli.py wires it."""
    p = add_toyworld_args(argparse.ArgumentParser(prog="vcstudio toyworld"))
    from ..errors import VcsError

    args = p.parse_args(argv)
    try:
        return run_toyworld(args)
    except VcsError as e:
        print(f"error: {e}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
