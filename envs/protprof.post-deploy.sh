#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda environment, after creating it from
# protprof.yaml. Install protprof from this checkout (editable: the jobs run the checkout's
# code; its dependencies are the environment's pins). UNTESTED, like the environment.
set -euo pipefail
pip install --no-deps -e "$(cd "$(dirname "$0")/.." && pwd)"
