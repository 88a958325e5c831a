"""Configs for partial reruns of committed full forms (for ``check_reproduction.py``).

Writes ``<out>/<config>.toml``: the config with its ``[full]`` grid cut to every k-th size
(all replications). Data sets are seeded per setup, seed, n and replication, so a partial
rerun fits exactly the committed tasks at those sizes and ``check_reproduction.py`` can
compare them task by task.

Usage::

    python benchmarks/partial_rerun_configs.py --out results/v080check \
        softmax-exact=40 temperature=40 softmax-over-agnostic=5
    moestats run results/v080check/softmax-exact.toml --full --results results/v080check/softmax-exact
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def partial_config(name, every, out):
    from moestats.simulation.spec import load_spec
    source = ROOT / "simulations" / f"{name}.toml"
    spec = load_spec(source, "full")
    sizes = [int(s) for s in list(spec.sample_sizes)[::every]]
    text = source.read_text()
    head = text[:text.index("\n[full]") + 1]
    path = Path(out) / f"{name}.toml"
    path.write_text(head + f"[full]\nsample_sizes = {sizes}\nreplications = {spec.replications}\n")
    return path, sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("configs", nargs="+", help="CONFIG=EVERY, e.g. softmax-exact=40")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for item in args.configs:
        name, every = item.split("=")
        path, sizes = partial_config(name, int(every), args.out)
        print(path, sizes)


if __name__ == "__main__":
    main()
