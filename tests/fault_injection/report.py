"""The report: counts per category, the damage matrix (file kind x damage) and the BAD
cases grouped by how they broke the contract, with their steps; written to report.txt
(every BAD case) and report.json (every case)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

from .contract import BAD, CLEAN, CORRECT, OUTCOMES
from .damage import DAMAGES, FILE_KINDS
from .lab import Case, Lab

CATEGORIES = ("kill", "kill-leaderboard", "damage", "fuzz-suite", "fuzz-coco")


def summary_table(cases: list[Case], lab: Lab | None = None) -> str:
    rows = [("category", "tried", *OUTCOMES)]
    for category in CATEGORIES:
        mine = [c for c in cases if c.category == category]
        if mine:
            counts = Counter(c.outcome for c in mine)
            rows.append((category, str(len(mine)), *(str(counts[o]) for o in OUTCOMES)))
    rows.append(("all", str(len(cases)),
                 *(str(sum(c.outcome == o for c in cases)) for o in OUTCOMES)))
    text = _columns(rows)
    if lab is not None and lab.missed:
        text += "\n(kill points the run ended before, not counted: " + ", ".join(
            f"{k} {v}" for k, v in sorted(lab.missed.items())) + ")"
    return text


def damage_matrix(cases: list[Case]) -> str:
    """One row per file kind, one column per damage: ok (named) / ok (silent) / error / BAD
    (several rounds join their outcomes with '+')."""
    cells: dict[tuple[str, str], list[str]] = {}
    for case in cases:
        if case.category != "damage":
            continue
        kind, how = case.key.rsplit(" / ", 1)
        word = {CORRECT: "ok (named)" if case.named else "ok (silent)", CLEAN: "error",
                BAD: "BAD"}[case.outcome]
        cells.setdefault((kind, how), []).append(word)
    if not cells:
        return ""
    rows = [("file kind", *DAMAGES)]
    for kind in FILE_KINDS:
        rows.append((kind.name, *("+".join(sorted(set(cells.get((kind.name, how), ["-"]))))
                                  for how in DAMAGES)))
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


BAD_KINDS = (  # (what the detail of a BAD case starts with or holds, the kind's name)
    ("no exit within", "no exit (hung)"),
    ("with a traceback", "a Python traceback"),
    ("died by signal", "death by a signal"),
    ("exit 0 with wrong results", "exit 0 with wrong or missing results"),
    ("with failed cells instead of one error line",
     "failed cells (exit 1, lines per cell) instead of one error line"),
    ("not one error line", "stderr is not one error line"),
    ("expected (2,)", "an error, but not exit 2"),
    ("names none of", "an error line naming neither the file nor the key"),
)


def bad_kind(case: Case) -> str:
    return next((name for marker, name in BAD_KINDS if marker in case.detail), "other")


def bad_report(cases: list[Case], examples: int | None = 3) -> str:
    """BAD cases grouped by how they broke the contract: each kind's count per category,
    then ``examples`` cases of it (every one when None) with their steps."""
    bad = [c for c in cases if c.outcome == BAD]
    if not bad:
        return "No BAD case."
    lines = [f"{len(bad)} BAD case(s):"]
    for _, kind in (*BAD_KINDS, ("", "other")):
        mine = [c for c in bad if bad_kind(c) == kind]
        if not mine:
            continue
        per_category = Counter(c.category for c in mine)
        lines += ["", f"== {kind}: {len(mine)} (" + ", ".join(
            f"{k} {v}" for k, v in per_category.items()) + ")"]
        for case in _examples(mine, examples):
            lines += [f"-- {case.category}: {case.key}", f"   {case.detail}"]
            lines += [f"   {step}" for step in case.steps]
            if case.kept:
                lines.append(f"   kept in {case.kept}")
    return "\n".join(lines)


def _examples(cases: list[Case], limit: int | None) -> list[Case]:
    """Up to ``limit`` cases, different (category, key) pairs first."""
    if limit is None:
        return cases
    seen, first, rest = set(), [], []
    for case in cases:
        (rest if (case.category, case.key) in seen else first).append(case)
        seen.add((case.category, case.key))
    return (first + rest)[:limit]


def full_report(lab: Lab, examples: int | None = 3) -> str:
    return "\n\n".join(part for part in (
        f"ravlm-bench fault injection: seed {lab.seed}, CLI calls {lab.launcher.mode}, "
        f"baseline run {lab.baseline_s:.1f} s, work directory {lab.out}",
        summary_table(lab.cases, lab), damage_matrix(lab.cases),
        bad_report(lab.cases, examples)) if part)


def write_report(lab: Lab) -> str:
    """report.txt (every BAD case) and report.json; returns the report with a few examples
    of each kind of BAD case, for the terminal."""
    (lab.out / "report.txt").write_text(full_report(lab, examples=None) + "\n")
    (lab.out / "report.json").write_text(json.dumps(
        {"seed": lab.seed, "mode": lab.launcher.mode, "baseline_s": lab.baseline_s,
         "missed": dict(lab.missed), "cases": [asdict(c) for c in lab.cases]}, indent=1))
    return full_report(lab)
