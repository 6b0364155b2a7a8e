"""Render one summary table and the plots from one or more bench results.json files of the same protocol.

Used for docs/results.md when a study was run in parts (same seed, rounds, pairs and data, so every variant saw
the same rounds). Later files win where a variant appears twice.

    python scripts/render_results.py runs/study/results.json runs/study-2/results.json --out docs/results
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from digitcmp.archs import ARCHS
from digitcmp.bench import KEY_FIELDS
from digitcmp.report import write_bench_files

PROTOCOL = ("rounds", "pairs", "test_pairs", "val_fraction", "seed")


def same_data(a: str, b: str) -> bool:
    """Data descriptions match up to the folder they were read from (../shared/mnist vs an absolute path)."""
    return re.sub(r" from \S+", "", a) == re.sub(r" from \S+", "", b)


def merge(paths: list[Path]) -> dict:
    documents = [json.loads(path.read_text()) for path in paths]
    first = documents[0]
    for path, document in zip(paths[1:], documents[1:], strict=True):
        differing = [key for key in PROTOCOL if document["config"][key] != first["config"][key]]
        if differing or not same_data(document["data"], first["data"]):
            sys.exit(f"error: {path} differs from {paths[0]} in {differing or ['data']}; cannot combine")
    variants: dict[tuple, dict] = {}
    for document in documents:
        for variant in document["variants"]:
            variants[tuple(variant.get(k) for k in KEY_FIELDS)] = variant
    order = list(ARCHS)  # the registry's order, then technique, as a single bench writes them
    ranked = sorted(variants.values(), key=lambda v: (order.index(v["arch"]), v["aux_weight"], v["weight_sharing"]))
    merged = {**documents[-1], "variants": ranked, "sources": [str(p) for p in paths]}
    merged["config"] = {**merged["config"], "archs": sorted({v["arch"] for v in merged["variants"]})}
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="bench results.json files")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json/.csv, summary.md, plots")
    args = parser.parse_args()
    document = merge(args.results)
    document["best"] = None  # best.pt belongs to one run; the combined table names none
    write_bench_files(args.out, document)
    print(f"{len(document['variants'])} variants → {args.out}/")


if __name__ == "__main__":
    main()
