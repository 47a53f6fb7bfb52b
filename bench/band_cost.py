"""What one arch of the band ranking costs: build, held-out KL right after it, release.

    .venv/bin/python bench/band_cost.py [--archs 12]
    .venv/bin/python <another checkout>/bench/band_cost.py   # that checkout's code

Builds ``--archs`` archs spread over the default space of the built-in parent, one after
another through the search's own pipeline (what run.py's band ranking does before the
first trial), and prints the seconds per arch (median, first, max) and the first KLs, so
two checkouts run one after the other show the same KLs and their costs side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=12)
    args = p.parse_args(argv)

    import plsearch
    from plsearch.config import configs_dir, load_device_profile
    from plsearch.families import get_family
    from plsearch.models import read_config, resolve_model_dir
    from plsearch.search.pipeline import load_pipeline
    from plsearch.search.space import load_space

    profile = load_device_profile("cpu")
    space = load_space(str(configs_dir() / "search" / "default.yaml"))
    model_dir = resolve_model_dir(None)
    pipeline = load_pipeline(model_dir, space, profile, None, seed=0)
    config = read_config(model_dir)
    grid = space.resolve(get_family(config).arch_from_config(config), profile.alignment)
    every = list(grid.archs())
    archs = every[:: max(1, len(every) // args.archs)][: args.archs]
    seconds, kls = [], []
    for arch in archs:
        start = time.perf_counter()
        model = pipeline.build(arch)
        kls.append(pipeline.heldout_kl(model)[0])
        pipeline.release(model)
        seconds.append(time.perf_counter() - start)
    print(f"plsearch from {Path(plsearch.__file__).parent}")
    print(f"band ranking cost: median {statistics.median(seconds):.2f} s per arch over "
          f"{len(archs)} archs (first {seconds[0]:.2f}, max {max(seconds):.2f}); "
          f"build KLs of the first four: {', '.join(f'{k:.4f}' for k in kls[:4])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
