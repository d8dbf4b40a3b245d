"""The ``bdl`` command: list and run the studies.

    bdl list
    bdl --version
    bdl run regression --out runs/regression [--seed 0] [--quick] [--data-root DIR] [--device cpu]
    bdl run mnist-guides --device cuda --devices 4 [--num-nodes 2] [--strategy ddp] [--precision bf16-mixed]
    bdl run uci --set dataset=yacht
    bdl run active-learning --set seeds=1 --set max_labels=300     (a study's own options)
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
    parser.add_argument("--version", action="version", version=f"bdl (bayesdl) {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the studies: what each reproduces, its options, whether it needs "
                                     "the data root, and roughly how long it takes")
    run = commands.add_parser("run", help="run a study and write its results",
                              description="Run a study; writes metrics.json, figures and report.md.")
    run.add_argument("study", help="name of the study (see `bdl list`)")
    run.add_argument("--out", default=None,
                     help="output folder (default: runs/<study>): new, empty, or an earlier run's, which "
                          "the new results replace as a whole when the run has finished")
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
    parallel = run.add_argument_group(
        "several devices and nodes (needs Lightning: pip install -e \".[distributed]\")",
        "SVI training runs data-parallel (each rank its own shard; gradients averaged) and "
        "predictions are sharded; Laplace and NUTS stay single-process (every rank computes them "
        "whole). Rank 0 alone writes. Multi-node: the same command on every node with MASTER_ADDR, "
        "MASTER_PORT and NODE_RANK set, or under torchrun (see the README).")
    parallel.add_argument("--devices", type=int, default=1,
                          help="processes (CPU) or GPUs per node, with --device cpu or cuda (default 1)")
    parallel.add_argument("--num-nodes", type=int, default=1, help="number of nodes (default 1)")
    parallel.add_argument("--strategy", default="ddp", choices=("ddp", "ddp_spawn", "ddp_fork"),
                          help="Lightning's DDP launcher (default ddp: one process per device)")
    parallel.add_argument("--precision", default="32-true",
                          choices=("32-true", "bf16-mixed", "64-true"),
                          help="Lightning precision (default 32-true; bf16-mixed on recent GPUs)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                     help="a study option (repeatable): e.g. --set dataset=yacht (uci), --set epochs=2 --set "
                          "samples=20 (a reduced run of the MNIST week-3 studies), --set "
                          "networks=lenet,corbiere (failure), --set seeds=1 (active-learning); `bdl list` "
                          "names each study's options, their defaults and their quick values")
    diagnose = commands.add_parser("diagnose", help="show a saved run's ArviZ diagnostics again",
                                   description="Print the ArviZ diagnostics (R-hat, ESS, PSIS-LOO) of a run "
                                               "folder without refitting.")
    diagnose.add_argument("run_dir", help="the --out folder of a `bdl run`")
    diagnose.add_argument("--plots", default=None, help="also write rank plots into this folder")
    return parser


def _version() -> str:
    """The installed package's version (importlib.metadata: no torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bayesdl")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0+unknown"


def _error(message) -> int:
    print(f"bdl: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The ``bdl`` command; returns the exit status: 0 done, 2 a mistake in the command or its
    inputs (one line on stderr, no traceback), 130 interrupted, 141 the reader of the output
    went away (``bdl list | head -1``)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader closed the pipe. Point stdout at /dev/null so that the interpreter's final
        # flush does not fail again, and end as the other tools of a pipeline do on SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _list() -> int:
    width = max(len(name) for name in STUDIES)
    for name, study in STUDIES.items():  # in the course's order
        print(f"{name:<{width}}  {study.description}")
        print(f"{'':<{width}}  reproduces: {study.reproduces}")
        data = "the data root (--data-root or $BAYESDL_DATA)" if study.needs_data else "no data root"
        print(f"{'':<{width}}  needs: {data}")
        print(f"{'':<{width}}  takes: --quick {study.quick_cost}; full run {study.full_cost}")
        if study.options.names():
            print(f"{'':<{width}}  options (--set KEY=VALUE):")
            for key, text in study.options.describe():
                print(f"{'':<{width}}    {key}: {text}")
    sys.stdout.flush()  # a closed pipe shows here, inside main
    return 0


def _main(argv):
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "diagnose":
        from .diagnose import diagnose

        try:
            print(diagnose(args.run_dir, plots=args.plots))
        except (ValueError, OSError) as err:
            return _error(err)
        return 0
    if args.seed < 0:  # before torch is even imported
        return _error(f"--seed must be >= 0, got {args.seed}")
    if (mismatch := _torchvision_problem(args.study)) is not None:
        return _error(mismatch)
    from .registry import run_study

    out = args.out or os.path.join("runs", args.study)
    malformed = [item for item in args.options if "=" not in item]
    if malformed:
        return _error(f"--set takes KEY=VALUE, got {malformed}")
    options = {}
    for item in args.options:
        key, value = item.split("=", 1)
        key = key.strip()
        if key in options:  # one value per option: which of two was meant cannot be guessed
            return _error(f"--set {key} given twice: {options[key]} and {value}")
        options[key] = value
    try:
        metrics = run_study(args.study, out, seed=args.seed, quick=args.quick,
                            data_root=args.data_root, device=args.device,
                            progress=not args.no_progress, cache_dir=args.cache_dir,
                            download=args.download, devices=args.devices, num_nodes=args.num_nodes,
                            strategy=args.strategy, precision=args.precision,
                            options=options)
    except (ValueError, OSError, ImportError) as err:  # a mistake in the inputs, the file system refusing
        return _error(err)
    except KeyboardInterrupt:
        print(f"bdl: interrupted; {out} is as it was before this run", file=sys.stderr)
        return 130
    if _is_rank_zero():
        print(f"{args.study}: results in {out}/ (metrics.json, report.md, figures); "
              f"{metrics['config']['wall_time_seconds']} s")
    return 0


def _torchvision_problem(study: str) -> ImportError | None:
    """A torch/torchvision mismatch, named before any work of a study that imports torchvision."""
    if study not in STUDIES or not STUDIES[study].uses_torchvision:
        return None
    from bayesdl._environment import check_torchvision

    try:
        check_torchvision()
    except ImportError as err:
        return err
    return None


def _is_rank_zero() -> bool:
    """Whether this process is rank 0 (or the only one) of a launched run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0 and \
        int(os.environ.get("NODE_RANK", "0")) == 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
