"""Mutation testing of the code where a silent error costs most, with mutmut: how many small changes to that code
the test suite notices, and which it does not.

Each mutant is one small change (a comparison flipped, a constant changed, an argument dropped) to one function;
a mutant is killed when a test that covers the function fails. The scope is named below by concern, as mutmut's
mutant-name patterns; ``[tool.mutmut]`` in pyproject.toml names the files and the pytest arguments. About an hour
on 2 cores; not part of CI. docs/testing.md gives the score and every surviving mutant.

    pip install mutmut
    python scripts/mutation.py                 # every concern below
    python scripts/mutation.py --concern "export's gate"   # one of them
    python scripts/mutation.py --summary-only  # the score of what was tested so far (an interrupted run too)
    mutmut show NAME                           # the diff of one mutant
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCOPE = {
    "pair drawing": ["digitcmp.data.x_draw_pairs__*", "digitcmp.data.x_split_validation__*"],
    "comparison heads and losses": ["digitcmp.model.network.xǁStructuredHeadǁforward__*",
                                    "digitcmp.model.network.x_comparison_logit__*",
                                    "digitcmp.model.losses.*"],
    "training's round and checkpoint selection": ["digitcmp.train.x_keep_best__*",
                                                  "digitcmp.train.x_epoch_order__*",
                                                  "digitcmp.train.xǁRunResultǁsummary__*",
                                                  "digitcmp.train.xǁRunResultǁmean_std__*",
                                                  "digitcmp.train.xǁRunResultǁbest_epoch_summary__*"],
    "export's gate": ["digitcmp.export.x_check_parity__*"],
    "predict's pairing": ["digitcmp.predict.x_run_pairs__*", "digitcmp.predict.x_predict_pairs__*",
                          "digitcmp.predict.xǁPredictionǁ*", "digitcmp.predict.x_read_pairs_csv__*",
                          "digitcmp.predict.x_pairs_to_read__*"],
    "the regression gate": ["digitcmp.gate.x_compare__*", "digitcmp.gate.x_recipe_changes__*",
                            "digitcmp.gate.x_read_baseline__*", "digitcmp.gate.xǁGateǁ*"],
    "serve's handlers": ["digitcmp.serve.x_compare_images__*", "digitcmp.serve.x_read_images__*",
                         "digitcmp.serve.x_predict_images__*", "digitcmp.serve.x_model_info__*",
                         "digitcmp.serve.x_model_summary__*", "digitcmp.serve.x_healthz__*",
                         "digitcmp.serve.x_index__*",
                         "digitcmp.serve.x_not_found__*", "digitcmp.serve.x_not_allowed__*",
                         "digitcmp.serve.x_server_error__*"],
}  # fmt: skip
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def mutmut(*args: str, capture: bool = False) -> str:
    """Run one mutmut command in the repository (it reads ``[tool.mutmut]`` from pyproject.toml there)."""
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=REPO, text=True, check=True,
                          stdout=subprocess.PIPE if capture else None)  # fmt: skip
    return done.stdout or ""


def statuses() -> dict[str, str]:
    """Every generated mutant's name and status (killed, survived, no tests, timeout, ...)."""
    lines = mutmut("results", "--all", "true", capture=True).splitlines()
    found = {}
    for line in lines:
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("digitcmp."):
            found[name] = status.strip()
    return found


def concern_of(name: str) -> str | None:
    return next((c for c, patterns in SCOPE.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concern", choices=list(SCOPE), action="append", help="only these (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--report", type=Path, help="write the score and the survivors as JSON here")
    parser.add_argument("--summary-only", action="store_true", help="summarise the mutants tested so far, run none")
    args = parser.parse_args()
    chosen = args.concern or list(SCOPE)
    if not args.summary_only:
        mutmut("run", "--max-children", str(args.jobs), *(p for c in chosen for p in SCOPE[c]))

    by_concern: dict[str, Counter] = {c: Counter() for c in chosen}
    survivors: dict[str, list[str]] = {c: [] for c in chosen}
    for name, status in sorted(statuses().items()):
        concern = concern_of(name)
        if concern not in by_concern or status == "not checked":
            continue
        killed = status in KILLED
        by_concern[concern]["killed" if killed else "survived"] += 1
        if not killed:
            survivors[concern].append(f"{name} ({status})")

    total = sum(by_concern.values(), Counter())
    print(f"\n{'concern':44} {'mutants':>8} {'killed':>8} {'score':>7}")
    for concern, counts in [*by_concern.items(), ("all", total)]:
        n = counts["killed"] + counts["survived"]
        print(f"{concern:44} {n:8} {counts['killed']:8} {counts['killed'] / max(n, 1):7.1%}")
    for concern, names in survivors.items():
        for name in names:
            print(f"survived [{concern}] {name}")
    if args.report:
        report = {"concerns": {c: dict(n) for c, n in by_concern.items()}, "survivors": survivors}
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
