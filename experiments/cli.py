"""The ``bdl`` command: list and run the studies.

    bdl list
    bdl run regression --out runs/regression [--seed 0] [--quick] [--data-root DIR] [--device cpu]
    bdl diagnose runs/two-moons [--plots DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from .catalogue import STUDIES  # no torch: `bdl --help` and `bdl list` start at once


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bdl", description="bayesdl: reproduce the Bayesian deep learning course studies."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the studies")
    run = commands.add_parser("run", help="run a study and write its results",
                              description="Run a study; writes metrics.json, figures and report.md.")
    run.add_argument("study", help="name of the study (see `bdl list`)")
    run.add_argument("--out", default=None,
                     help="output folder (default: runs/<study>); written atomically")
    run.add_argument("--seed", type=int, default=0,
                     help="seed fixing data splits, initialisation and sampling (default 0)")
    run.add_argument("--quick", action="store_true",
                     help="small data and few steps: a smoke run of 20-55 CPU seconds per study (see the "
                          "README), whose numbers are not the study's results")
    run.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"),
                     help="torchvision dataset root (default: $BAYESDL_DATA)")
    run.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    run.add_argument("--download", action="store_true",
                     help="download missing datasets with torchvision (needs internet); off by default")
    run.add_argument("--cache-dir", default=None,
                     help="folder caching trained networks by config hash (default: <out>/../.cache)")
    run.add_argument("--no-progress", action="store_true",
                     help="print no progress at all (by default: bars on a terminal, a few plain lines per "
                          "loop when stderr is a file or a pipe)")
    diagnose = commands.add_parser("diagnose", help="show a saved run's ArviZ diagnostics again",
                                   description="Print the ArviZ diagnostics (R-hat, ESS, PSIS-LOO) of a run "
                                               "folder without refitting.")
    diagnose.add_argument("run_dir", help="the --out folder of a `bdl run`")
    diagnose.add_argument("--plots", default=None, help="also write rank plots into this folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        width = max(len(name) for name in STUDIES)
        for name, study in STUDIES.items():  # in the course's order
            print(f"{name:<{width}}  {study.description}")
            print(f"{'':<{width}}  reproduces: {study.reproduces}")
        return 0
    if args.command == "diagnose":
        from .diagnose import diagnose

        try:
            print(diagnose(args.run_dir, plots=args.plots))
        except FileNotFoundError as err:
            print(f"bdl: error: {err}", file=sys.stderr)
            return 2
        return 0
    from .registry import run_study

    out = args.out or os.path.join("runs", args.study)
    try:
        metrics = run_study(args.study, out, seed=args.seed, quick=args.quick,
                            data_root=args.data_root, device=args.device,
                            progress=not args.no_progress, cache_dir=args.cache_dir,
                            download=args.download)
    except (ValueError, FileNotFoundError) as err:
        print(f"bdl: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.study}: results in {out}/ (metrics.json, report.md, figures); "
          f"{metrics['config']['wall_time_seconds']} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
