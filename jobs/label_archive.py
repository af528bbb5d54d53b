"""Ray job entry point: label an archive on the cluster this job was submitted to.

    ray job submit --working-dir . -- python jobs/label_archive.py \
        --manifest s3://bucket/m.parquet --model s3://bucket/model/ --out s3://bucket/labels/run1

A thin wrapper over the library (`vidbatch label ... --engine ray`): every
option of `vidbatch label` is accepted after the three named here.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the submitted working dir

from vidbatch.cli import main  # noqa: E402


def build_argv(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="label_archive.py", description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    known, rest = parser.parse_known_args(argv)
    return ["label", known.manifest, "--model", known.model, "--out", known.out, "--engine", "ray", "--no-progress", *rest]


if __name__ == "__main__":
    sys.exit(main(build_argv(sys.argv[1:])))
