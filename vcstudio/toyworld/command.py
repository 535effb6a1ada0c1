"""CLI of the toy world: ``vcstudio toyworld {train,eval,examples}``.

Wiring in vcstudio/cli.py: ``add_toyworld_args(sub.add_parser("toyworld"))`` and dispatch to
``run_toyworld(args)``.
"""
from __future__ import annotations

import argparse
import json


def add_toyworld_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="toyworld_action", required=True)
    t = sub.add_parser("train", help="train the embedded toy model (VAE, CLIP, U-Net)")
    t.add_argument("--out", default="assets/toy-sd", help="diffusers folder to write")
    t.add_argument("--clip-out", default="assets/toy-clip", help="toy CLIP folder to write")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--minutes", type=float, default=8.0, help="total time budget (all phases)")
    t.add_argument("--device", default=None, help="cuda / cpu (default: CUDA if present)")
    t.add_argument("--batch", type=int, default=None, help="default 256 on CUDA, 16 on CPU")
    t.add_argument("--vae-steps", type=int, default=None, help="pin the step count (else from budget)")
    t.add_argument("--clip-steps", type=int, default=None)
    t.add_argument("--unet-steps", type=int, default=None)
    t.add_argument("--text-encoder", choices=["clip", "joint"], default="clip",
                   help="clip: the toy CLIP's text tower, frozen (as SD); joint: trained with the U-Net")
    t.add_argument("--size", type=int, default=64, help="image side (multiple of 8)")
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


def run_toyworld(args: argparse.Namespace) -> int:
    from ..progress import TqdmProgress

    if args.toyworld_action == "train":
        from .train import ModelSizes, ToyTrainConfig, train_toyworld

        sizes = ModelSizes.tiny() if args.tiny else ModelSizes()
        if not args.tiny:
            sizes.size = args.size
        cfg = ToyTrainConfig(out=args.out, clip_out=args.clip_out, seed=args.seed, minutes=args.minutes,
                             device=args.device, batch=args.batch, vae_steps=args.vae_steps,
                             clip_steps=args.clip_steps, unet_steps=args.unet_steps,
                             text_encoder=args.text_encoder, sizes=sizes)
        log = train_toyworld(cfg, TqdmProgress())
        log.pop("losses", None)
        print(json.dumps({k: log[k] for k in ("steps", "seconds", "final_loss", "scaling_factor", "mb",
                                              "rerun")}, indent=1))
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
