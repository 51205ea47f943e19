"""Challenge leaderboards over several submissions scored on the same cases: ranks per metric, mean rank,
final positions, and the leaderboard as JSON-ready dict, CSV and Markdown. Pure functions, no files.

The rule (both protocols): every submission's mean over cases of each leaderboard metric is ranked among the
submissions with competition ranking ("1224": equal values share the best rank, the next rank skips), in the
metric's direction; a None mean (undefined on every case) ranks last, tied with the other None means. The
ranks that decide the order are averaged into ``mean_rank``, and positions are the competition ranks of the
mean ranks (lower first; equal mean ranks share the position and keep the input order).

- atm26 (ATM'26 Track 1): the mean rank over DSC, clDice, TLD, BD (higher better) and Betti0Error (lower
  better).
- atm22 (ATM'22): one score, the mean of the case means of TD, BD, DSC and precision (%), ranked higher
  better; ``mean_rank`` is that one rank. The four metrics' ranks are reported beside it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# protocol -> the leaderboard's metrics, as (summary "mean" key, higher is better). A new protocol is one line.
RANK_METRICS: dict[str, tuple[tuple[str, bool], ...]] = {
    "atm26": (("DSC", True), ("clDice", True), ("TLD", True), ("BD", True), ("Betti0Error", False)),
    "atm22": (("TD", True), ("BD", True), ("DSC", True), ("precision", True)),
}
# protocols ranked by one score, the mean of their metrics' means (all higher better), instead of by the mean
# rank over the metrics: protocol -> the score's name
SCORES: dict[str, str] = {"atm22": "score"}

DEFINITIONS: dict[str, str] = {
    "atm26": "ATM'26 leaderboard: each submission's mean over cases of DSC, clDice, TLD, BD (higher better) and "
             "Betti0Error (lower better) is ranked among the submissions; mean_rank is the mean of these five ranks "
             "and the positions follow mean_rank, lowest first.",
    "atm22": "ATM'22 leaderboard: score = mean of the case means of TD, BD, DSC and precision (%), ranked higher "
             "better; mean_rank is the rank of the score and the positions follow it. The ranks of the four "
             "metrics are reported, not averaged.",
}
RANK_RULE = ("Ranks are competition ranks ('1224': equal values share the best rank, the next rank skips); a "
             "null mean (undefined on every case) ranks last; equal mean ranks share the position and keep the "
             "input order.")


@dataclass(frozen=True)
class Submission:
    """One prediction folder's result: its name on the board, its folder, and metric name -> mean over cases
    (None: undefined)."""

    name: str
    folder: str
    means: Mapping[str, float | None]


def check_rank_protocol(protocol: str) -> str:
    """``protocol`` if it has a leaderboard (a key of RANK_METRICS), else ValueError."""
    if protocol not in RANK_METRICS:
        raise ValueError(f"protocol must be one of {tuple(RANK_METRICS)}, got {protocol!r}")
    return protocol


def competition_ranks(values: Sequence[float | None], higher_is_better: bool = True) -> list[int]:
    """Competition ranks ("1224", 1 best) of ``values``: equal values share the best rank; None ranks last,
    after every number (all Nones share that rank). ValueError for NaN."""
    for value in values:
        if value is not None and math.isnan(value):
            raise ValueError("competition_ranks: NaN cannot be ranked; give None for an undefined value")
    present = [v for v in values if v is not None]
    ranks = []
    for value in values:
        if value is None:
            ranks.append(len(present) + 1)
        else:
            better = sum(1 for other in present if (other > value if higher_is_better else other < value))
            ranks.append(better + 1)
    return ranks


def score(means: Mapping[str, float | None], metrics: Sequence[str]) -> float | None:
    """Mean of ``means[metric]`` over ``metrics`` (same unit as they); None when any of them is None or
    missing. ValueError without metrics."""
    if not metrics:
        raise ValueError("score needs at least one metric")
    values = [means.get(metric) for metric in metrics]
    if any(value is None for value in values):
        return None
    return float(sum(values)) / len(values)  # type: ignore[arg-type]


def atm22_score(means: Mapping[str, float | None]) -> float | None:
    """The ATM'22 score (%): mean of the TD, BD, DSC and precision means (%); None if one is None."""
    return score(means, [metric for metric, _ in RANK_METRICS["atm22"]])


def board_metrics(protocol: str) -> tuple[tuple[str, bool], ...]:
    """Every (metric, higher is better) a protocol's board shows: its metrics, then its score if it has one."""
    metrics = RANK_METRICS[check_rank_protocol(protocol)]
    return (*metrics, (SCORES[protocol], True)) if protocol in SCORES else metrics


def ordering_metrics(protocol: str) -> tuple[str, ...]:
    """The metrics whose ranks are averaged into mean_rank: the score, or else every metric."""
    check_rank_protocol(protocol)
    return (SCORES[protocol],) if protocol in SCORES else tuple(metric for metric, _ in RANK_METRICS[protocol])


def _board_means(protocol: str, means: Mapping[str, float | None]) -> dict[str, float | None]:
    """The submission's means of the board's metrics, with the score computed where the protocol has one."""
    metrics = [metric for metric, _ in RANK_METRICS[protocol]]
    values = {metric: None if means.get(metric) is None else float(means[metric]) for metric in metrics}
    if protocol in SCORES:
        if not all(higher for _, higher in RANK_METRICS[protocol]):
            raise ValueError(f"protocol {protocol}: a score averages higher-is-better metrics only")
        values[SCORES[protocol]] = score(values, metrics)
    return values


def leaderboard(protocol: str, submissions: Sequence[Submission], cases: int) -> dict:
    """The leaderboard of ``submissions`` (scored on the same ``cases`` cases) under ``protocol``.

    Returns {"protocol", "metrics": [{"name", "higher_is_better", "averaged"}], "submissions": [{"name",
    "folder", "means", "ranks", "mean_rank", "position"}] in final order, "cases", "definitions"}; means are in
    the summary's units. ValueError for an unknown protocol, no submissions, repeated names or cases < 1.
    """
    check_rank_protocol(protocol)
    if not submissions:
        raise ValueError("leaderboard needs at least one submission")
    names = [s.name for s in submissions]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"submission names must differ; repeated: {', '.join(repeated)}")
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    shown, averaged = board_metrics(protocol), ordering_metrics(protocol)
    means = [_board_means(protocol, s.means) for s in submissions]
    ranks: list[dict[str, int]] = [{} for _ in submissions]
    for metric, higher in shown:
        for row, rank in zip(ranks, competition_ranks([m[metric] for m in means], higher), strict=True):
            row[metric] = rank
    mean_ranks = [sum(row[metric] for metric in averaged) / len(averaged) for row in ranks]
    positions = competition_ranks(mean_ranks, higher_is_better=False)
    order = sorted(range(len(submissions)), key=lambda i: (positions[i], i))
    rows = [{"name": submissions[i].name, "folder": submissions[i].folder, "means": means[i], "ranks": ranks[i],
             "mean_rank": mean_ranks[i], "position": positions[i]} for i in order]
    return {"protocol": protocol,
            "metrics": [{"name": metric, "higher_is_better": higher, "averaged": metric in averaged}
                        for metric, higher in shown],
            "submissions": rows, "cases": cases, "definitions": f"{DEFINITIONS[protocol]} {RANK_RULE}"}


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _mean_rank(value: float) -> str:
    return f"{value:.2f}"


def leaderboard_markdown(board: dict) -> str:
    """A Markdown table of ``board`` (from :func:`leaderboard`): position, name, each metric's mean with its
    rank in brackets, mean rank; then the rule. ASCII only, so any terminal prints it."""
    metrics = [m["name"] for m in board["metrics"]]
    titles = [m["name"] if m["higher_is_better"] else f"{m['name']} (lower better)" for m in board["metrics"]]
    header = ["Position", "Submission", *titles, "Mean rank"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board["submissions"]:
        cells = [str(row["position"]), row["name"].replace("|", "\\|"),
                 *(f"{_value(row['means'][name])} ({row['ranks'][name]})" for name in metrics),
                 _mean_rank(row["mean_rank"])]
        lines.append("| " + " | ".join(cells) + " |")
    n = board["cases"]
    return "\n".join([*lines, "", f"Protocol {board['protocol']}, {n} case{'s' if n != 1 else ''} per submission, "
                      f"higher is better unless marked. {board['definitions']}"]) + "\n"


def leaderboard_csv(board: dict) -> str:
    """One row per submission in final order: position, name, folder, then per metric its mean and rank
    (columns METRIC, METRIC_rank; an undefined mean is empty), then mean_rank."""
    metrics = [m["name"] for m in board["metrics"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["position", "name", "folder", *(c for name in metrics for c in (name, f"{name}_rank")),
                     "mean_rank"])
    for row in board["submissions"]:
        values = [c for name in metrics for c in (row["means"][name], row["ranks"][name])]
        writer.writerow([row["position"], row["name"], row["folder"], *("" if v is None else v for v in values),
                         row["mean_rank"]])
    return out.getvalue()
