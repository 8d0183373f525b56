"""The `skillscale` command line.

    skillscale run configs/quickstart.yaml        # a whole study (local Ray by default)
    skillscale status STUDY_DIR                   # where a study stands
    skillscale fit RUNS.parquet --bootstrap 500   # fit scaling laws to a table of runs
    skillscale train --params 1e6 --tokens 2e6    # one training run
    skillscale report STUDY_DIR                   # plots and an HTML page

Bad input is one line on stderr and exit status 2; nothing else exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from skillscale.errors import InputError, OneLineArgumentParser, Terminated


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="skillscale", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from fitting.cli import add_fit_parser
    from scheduler.commands import add_study_parsers
    from trainers.cli import add_train_parser

    add_fit_parser(sub)
    add_train_parser(sub)
    add_study_parsers(sub)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a bad flag: one line, exit 2 (OneLineArgumentParser)
    if args.command == "run":  # Ray reads these when it is imported: set them before scheduler.controller is
        from scheduler.preflight import LOCAL_AUTH_ENV, ray_env_for

        address = args.address or os.environ.get("RAY_ADDRESS")
        for key, value in {**ray_env_for(address), **({} if address else LOCAL_AUTH_ENV)}.items():
            os.environ.setdefault(key, value)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"skillscale {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skillscale {args.command}: interrupted; state on disk is consistent, rerun to resume",
              file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only file system: every state write is atomic, nothing is torn
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"skillscale {args.command}: error: {where}{exc.strerror or exc}; the study's state on disk is "
              "consistent (writes are atomic): fix that and rerun to resume", file=sys.stderr)
        return 2
    except Terminated:
        print(f"skillscale {args.command}: terminated (SIGTERM); state on disk is consistent, rerun to resume",
              file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
