"""Statistics of human pairwise votes for the leaderboard (issue 16, item 3): pure functions, no storage.

A vote compares two methods on the same case: ``left``, ``right`` (that side is better), ``tie`` (as
good) or ``both_bad`` (neither is acceptable). Math (docs/guide_benchmark.md, "Human ratings"):

* **Bradley-Terry** scores ``theta`` (natural-log strengths, mean 0; P(i beats j) = sigmoid(theta_i -
  theta_j)), fitted by maximum likelihood with Hunter's (2004) MM iteration on the win-count matrix.
  ``tie`` and ``both_bad`` both count as half a win for each side (as Chatbot Arena's BT fit counts a
  tie): neither says which method is better. ``both_bad`` is also counted per method
  (:func:`summary`), so a board can show it, but it does not move the ranking.
* **Prior**: every compared pair gets :data:`PRIOR` = 1 virtual game, half a win each way (a Jeffreys
  Beta(1/2, 1/2) prior on the pair's win share), plus a :data:`GUARD` of 0.1 virtual tie that keeps
  every fit finite and its iteration short. A method that won all of 3 votes gets a finite score
  (log 7 ~ 1.9 apart), not one that grows without bound; with hundreds of votes per pair the prior is
  negligible.
* **Bayesian bootstrap 95% intervals** (Rubin 1981): each round weighs the distinct votes and the
  prior's virtual half-wins by Dirichlet(count) weights, BT is refitted, and the 2.5 / 97.5
  percentiles are reported. The plain bootstrap resamples only what was seen, so a few one-sided
  votes gave every round the same fit and an interval of zero width; the prior's virtual wins of the
  other side make that interval as wide as the votes leave the question open. For many votes it
  matches the plain bootstrap (same variance to first order). **Rank upper bound** (Chatbot Arena's
  "rank (UB)"): 1 + the number of methods whose interval lies entirely above this one's. A method in
  fewer than ``min_votes`` votes (the board: :data:`MIN_VOTES`) is not ranked at all: "too few votes".
* **Krippendorff's alpha** (nominal) over the (case, pair) units rated by two or more raters, from the
  ``krippendorff`` package (tested here against Krippendorff's textbook example).
* **Rater flag**: a rater's decisive votes on pairs the others' consensus (BT without that rater)
  separates; flagged when the share agreeing with the consensus is not better than chance: one-sided
  binomial test of H0 agreement = 1/2, p >= ``alpha`` (with at least ``min_votes`` such votes).
* **Sampler**: pairs drawn with probability proportional to ``1 / (1 + votes so far)``, never a pair
  the rater has already voted on, sides in random order.
* **Composite vs people**: Spearman and Kendall tau-b between the composite score and the BT score of
  each method, with bootstrap 95% intervals over the votes.

CSV export: the pairwise form :func:`flowstudio.bench.composite.read_ratings` reads
(``case_id,method_a,method_b,winner`` with ``winner`` ``a`` / ``b`` / ``tie``; ``both_bad`` is written
as ``tie``), plus ``vote`` (as cast) and ``rater`` columns that the reader ignores.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.bench.composite import kendall_tau_b, spearman
from flowstudio.errors import InputError

VOTES = ("left", "right", "tie", "both_bad")
PRIOR = 1.0  # virtual games per compared pair, half a win each way (Jeffreys), resampled as votes are
GUARD = 0.1  # virtual tie per compared pair in every fit: keeps a bootstrap round's fit finite and fast
MIN_VOTES = 10  # fewer votes than this: the board shows "too few votes", not a rank
_OUTCOME = {"left": 0, "right": 1, "tie": 2, "both_bad": 2}  # left's score: 1, 0, 1/2


@dataclass(frozen=True)
class Vote:
    """One pairwise vote: ``left`` and ``right`` are method names as shown to the rater."""

    case_id: str
    left: str
    right: str
    vote: str
    rater: str = ""

    def __post_init__(self) -> None:
        if self.vote not in VOTES:
            raise InputError(f"vote must be one of {', '.join(VOTES)}; got {self.vote!r}")
        if self.left == self.right:
            raise InputError(f"a vote compares two different methods; got {self.left!r} twice")


def _encode(votes: Sequence[Vote], methods: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (left index, right index, left's score 1 / 0 / 0.5) of ``votes`` and their counts.

    Votes of one kind are interchangeable for BT and its bootstrap, so everything downstream is sized
    by the number of kinds (at most 3 n^2), not by the number of votes.
    """
    index = {m: i for i, m in enumerate(methods)}
    unknown = sorted({m for v in votes for m in (v.left, v.right)} - set(index))
    if unknown:
        raise InputError(f"votes name methods {unknown} that are not in {list(methods)}")
    n = len(methods)
    codes = [(index[v.left] * n + index[v.right]) * 3 + _OUTCOME[v.vote] for v in votes]
    kinds, counts = np.unique(np.array(codes, np.intp), return_counts=True)
    pair, outcome = np.divmod(kinds, 3)
    left, right = np.divmod(pair, n)
    return np.stack([left, right]), np.array([1.0, 0.0, 0.5])[outcome], counts.astype(float)


def _wins(sides: np.ndarray, score: np.ndarray, n: int, weight: np.ndarray) -> np.ndarray:
    """Win matrices ``(B, n, n)``: ``W[b, i, j]`` = i's wins over j (ties half), kind weights ``(B, K)``."""
    # One (K, n*n) matrix of each kind's contribution, so every replicate is one row of a matmul.
    left, right = sides
    contribution = np.zeros((len(score), n * n))
    rows = np.arange(len(score))
    contribution[rows, left * n + right] = score
    contribution[rows, right * n + left] = 1 - score
    return (weight @ contribution).reshape(-1, n, n)


def fit_bt(
    wins: np.ndarray, *, prior: float = PRIOR + GUARD, tol: float = 1e-10, max_iter: int = 5000
) -> np.ndarray:
    """Bradley-Terry log-strengths (mean 0) of win matrices ``(..., n, n)`` by Hunter's MM iteration.

    ``prior`` virtual games, half a win each way, are added to every pair that was compared at least
    once (a pair never compared stays uninformative). A method without any vote gets ``nan`` (and is
    left out of the mean).
    """
    wins = np.asarray(wins, float)
    games = wins + np.swapaxes(wins, -1, -2)
    compared = games > 0
    wins = wins + prior / 2 * compared
    games = games + prior * compared
    total = wins.sum(-1)
    played = games.sum(-1) > 0  # a method without any vote keeps strength 1 while the others fit
    count = np.maximum(played.sum(-1, keepdims=True), 1)

    def centred_log(strength: np.ndarray) -> np.ndarray:
        log = np.log(np.maximum(strength, 1e-300))
        return log - (log * played).sum(-1, keepdims=True) / count

    p = np.ones(wins.shape[:-1])
    for _ in range(max_iter):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(-1)
        new = np.where(played, total / np.maximum(denom, 1e-300), 1.0)
        new = np.exp(centred_log(new))  # geometric mean 1 over the methods with votes
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return np.where(played, centred_log(p), np.nan)  # no vote: no score


def bradley_terry(votes: Sequence[Vote], methods: Sequence[str]) -> np.ndarray:
    """BT log-strengths of ``methods`` (mean 0), in their order."""
    sides, score, counts = _encode(votes, methods)
    return fit_bt(_wins(sides, score, len(methods), counts[None]))[0]


def _with_prior(
    sides: np.ndarray, score: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vote kinds of :func:`_encode` followed by the prior's: for every compared pair (i < j), a
    kind "i wins" and a kind "j wins" of weight ``PRIOR / 2`` each."""
    pairs = np.unique(np.sort(sides, axis=0), axis=1)  # (2, P): each compared pair once, i < j
    both = np.concatenate([pairs, pairs], axis=1)
    won = np.concatenate([np.ones(pairs.shape[1]), np.zeros(pairs.shape[1])])
    return (
        np.concatenate([sides, both], axis=1),
        np.concatenate([score, won]),
        np.concatenate([counts, np.full(2 * pairs.shape[1], PRIOR / 2)]),
    )


def _bayesian_bootstrap_weights(counts: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Weights ``(rounds, K)`` of the kinds: Dirichlet(counts), scaled to the total count. A kind seen
    ``c`` times weighs as ``c`` unit-Dirichlet votes (Rubin's Bayesian bootstrap); fractional counts
    (the prior's) are weighed the same way, so unseen outcomes get weight too."""
    return rng.dirichlet(counts, size=rounds) * counts.sum()


def ratings_table(
    votes: Sequence[Vote],
    methods: Sequence[str],
    *,
    rounds: int = 1000,
    seed: int = 0,
    min_votes: int = 1,
) -> dict[str, Any]:
    """BT scores with Bayesian-bootstrap 95% intervals and rank upper bounds.

    A method in fewer than ``min_votes`` votes keeps its score and interval but gets rank 0 (not
    ranked); the ranks and rank upper bounds of the others count only ranked methods.

    Returns:
        ``{"methods", "theta", "lower", "upper", "rank", "rank_upper_bound", "ranked", "votes",
        "rounds", "replicates"}``; arrays in the order of ``methods`` (``replicates``: ``(rounds, n)``).
    """
    if not votes:
        raise InputError("no votes to rate")
    sides, score, counts = _encode(votes, methods)
    n = len(methods)
    per_method = np.bincount(sides.ravel(), np.concatenate([counts, counts]), minlength=n)
    # fit_bt's default prior (PRIOR + GUARD) makes this the replicates' fit at the Dirichlet's mean
    theta = fit_bt(_wins(sides, score, n, counts[None]))[0]
    sides, score, weights = _with_prior(sides, score, counts)
    rng = np.random.default_rng(seed)
    replicates = fit_bt(
        _wins(sides, score, n, _bayesian_bootstrap_weights(weights, rounds, rng)), prior=GUARD
    )
    with warnings.catch_warnings():  # a method without votes has no score in any resample: nan bounds
        warnings.simplefilter("ignore", RuntimeWarning)
        lower, upper = np.nanpercentile(replicates, [2.5, 97.5], axis=0)
    ranked = per_method >= max(min_votes, 1)
    order = np.where(ranked, -theta, np.inf)
    rank = np.where(ranked, 1 + np.argsort(np.argsort(order)), 0)
    bound = rank_upper_bounds(np.where(ranked, lower, -np.inf), np.where(ranked, upper, np.inf))
    return {
        "methods": list(methods),
        "theta": theta,
        "lower": lower,
        "upper": upper,
        "rank": rank,
        "rank_upper_bound": np.where(ranked, bound, 0),
        "ranked": ranked,
        "votes": len(votes),
        "rounds": rounds,
        "replicates": replicates,
    }


def rank_upper_bounds(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """1 + the number of methods whose interval lies entirely above each method's (best possible rank)."""
    return 1 + (lower[None, :] > upper[:, None]).sum(1)


def elo(theta: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo scale of Chatbot Arena (400 points = 10x odds), centred on 1000."""
    return 1000.0 + 400.0 / np.log(10.0) * np.asarray(theta)


def summary(votes: Sequence[Vote], methods: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per method: votes, wins, losses, ties and both-bad votes it appeared in."""
    out = {m: {"votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for m in methods}
    for v in votes:
        for side, other in ((v.left, "right"), (v.right, "left")):
            row = out[side]
            row["votes"] += 1
            if v.vote in ("tie", "both_bad"):
                row["ties" if v.vote == "tie" else "both_bad"] += 1
            else:
                row["losses" if v.vote == other else "wins"] += 1
    return out


# --- agreement between raters ------------------------------------------------------------------------


def _canonical(v: Vote) -> tuple[tuple[str, str, str], str]:
    """The (case, first method, second method) unit with methods sorted, and the vote in that order."""
    if v.left <= v.right:
        return (v.case_id, v.left, v.right), v.vote
    flipped = {"left": "right", "right": "left"}.get(v.vote, v.vote)
    return (v.case_id, v.right, v.left), flipped


def krippendorff_alpha(votes: Sequence[Vote]) -> float | None:
    """Nominal Krippendorff's alpha of the votes on (case, pair) units with two or more raters.

    Values: the vote with the pair in a fixed order (first better, second better, tie, both bad).
    ``None`` when fewer than two units have two raters (alpha is undefined).
    """
    units: dict[tuple[str, str, str], dict[str, int]] = {}
    for v in votes:
        unit, vote = _canonical(v)
        units.setdefault(unit, {})[v.rater] = VOTES.index(vote)
    shared = [u for u in units.values() if len(u) >= 2]
    if len(shared) < 2:
        return None
    raters = sorted({r for u in shared for r in u})
    data = np.full((len(raters), len(shared)), np.nan)
    for j, unit in enumerate(shared):
        for rater, value in unit.items():
            data[raters.index(rater), j] = value
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return 1.0  # every rater gave the same value everywhere: perfect agreement, no variation
    return alpha_of(data, "nominal")


def alpha_of(data: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha of a raters x units matrix (``nan``: not rated), ``level`` of measurement
    ``nominal``, ``ordinal``, ``interval`` or ``ratio`` (Likert ratings: ``ordinal``)."""
    import krippendorff

    return float(krippendorff.alpha(reliability_data=np.asarray(data, float), level_of_measurement=level))


def flag_raters(
    votes: Sequence[Vote],
    methods: Sequence[str],
    *,
    alpha: float = 0.05,
    min_votes: int = 20,
    margin: float = 0.1,
) -> dict[str, dict[str, Any]]:
    """Per rater: agreement with the others' consensus and whether it is no better than chance.

    The consensus is the BT fit of every other rater's votes; a pair counts when its score gap is at
    least ``margin`` (the others prefer one side) and the rater voted left or right. Flagged when the
    rater has ``min_votes`` such votes and a one-sided binomial test of H0 "agreement = 1/2" against
    "agreement > 1/2" gives p >= ``alpha``.
    """
    from scipy.stats import binomtest

    index = {m: i for i, m in enumerate(methods)}
    out: dict[str, dict[str, Any]] = {}
    for rater in sorted({v.rater for v in votes}):
        others = [v for v in votes if v.rater != rater]
        mine = [v for v in votes if v.rater == rater and v.vote in ("left", "right")]
        theta = bradley_terry(others, methods) if others else np.zeros(len(methods))
        agree = total = 0
        for v in mine:
            gap = theta[index[v.left]] - theta[index[v.right]]
            if abs(gap) < margin:
                continue
            total += 1
            agree += (gap > 0) == (v.vote == "left")
        p_value = float(binomtest(agree, total, 0.5, alternative="greater").pvalue) if total else 1.0
        out[rater] = {
            "votes": total,
            "agree": agree,
            "agreement": agree / total if total else None,
            "p_value": p_value,
            "flagged": total >= min_votes and p_value >= alpha,
        }
    return out


# --- sampling pairs to show ----------------------------------------------------------------------------


def sample_pair(
    pairs: Sequence[tuple[str, str, str]],
    counts: dict[tuple[str, str, str], int],
    rng: np.random.Generator,
    *,
    seen: Iterable[tuple[str, str, str]] = (),
) -> tuple[str, str, str] | None:
    """A ``(case_id, left, right)`` to show, or ``None`` when the rater has voted on every pair.

    ``pairs`` are ``(case_id, method_a, method_b)``; ``counts`` the votes so far per pair (either
    order); ``seen`` the pairs this rater voted on. Weight ``1 / (1 + votes)``: a pair without votes
    is drawn twice as often as one with a single vote. Sides are shuffled.
    """
    done = {_unit(p) for p in seen}
    open_pairs = [p for p in pairs if _unit(p) not in done]
    if not open_pairs:
        return None
    weight = np.array([1.0 / (1 + counts.get(_unit(p), 0)) for p in open_pairs])
    case_id, a, b = open_pairs[int(rng.choice(len(open_pairs), p=weight / weight.sum()))]
    return (case_id, a, b) if rng.random() < 0.5 else (case_id, b, a)


def _unit(pair: tuple[str, str, str]) -> tuple[str, str, str]:
    case_id, a, b = pair
    return (case_id, *sorted((a, b)))


# --- composite vs people ------------------------------------------------------------------------------


def rank_agreement(
    composite: dict[str, float], votes: Sequence[Vote], *, rounds: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Spearman and Kendall tau-b of the composite score against the BT score of the methods, with
    Bayesian-bootstrap 95% intervals (the rounds of :func:`ratings_table`; the composite is fixed).
    Methods: those in ``composite``."""
    methods = sorted(composite)
    if len(methods) < 3:
        raise InputError(f"rank correlation needs at least 3 methods, got {methods}")
    table = ratings_table(votes, methods, rounds=rounds, seed=seed)
    comp = np.array([composite[m] for m in methods], float)
    out: dict[str, Any] = {"methods": methods, "rounds": rounds}
    for name, fn in (("spearman", spearman), ("kendall", kendall_tau_b)):
        values = np.array([_number(fn(comp, rep)) for rep in table["replicates"]], float)
        values = values[np.isfinite(values)]
        out[name] = fn(comp, table["theta"])
        out[f"{name}_interval"] = [float(v) for v in np.percentile(values, [2.5, 97.5])]
    return out


def _number(value: float | None) -> float:
    return np.nan if value is None else float(value)


# --- simulation (tests and benchmarks/ratings_simulation.py) ---------------------------------------


@dataclass(frozen=True)
class SimulatedRater:
    """A rater of known preference strength: P(i preferred to j) = sigmoid(strength (theta_i - theta_j))
    on a decisive vote; a vote is ``tie`` or ``both_bad`` (half each) with probability ``no_pick``."""

    name: str
    strength: float
    no_pick: float = 0.1

    def p_first(self, gap: np.ndarray | float) -> np.ndarray | float:
        """Expected BT score of the first method (ties half): the rater's population estimand."""
        return (1 - self.no_pick) / (1 + np.exp(-self.strength * np.asarray(gap))) + self.no_pick / 2


def simulate_votes(
    theta: Sequence[float],
    raters: Sequence[SimulatedRater],
    n_votes: int,
    rng: np.random.Generator,
    *,
    cases: int = 20,
) -> tuple[list[str], list[Vote]]:
    """``n_votes`` votes on uniformly drawn pairs of methods ``m0 .. m{n-1}`` of true scores ``theta``."""
    theta = np.asarray(theta, float)
    methods = [f"m{i}" for i in range(len(theta))]
    votes: list[Vote] = []
    for _ in range(n_votes):
        i, j = rng.choice(len(theta), 2, replace=False)
        rater = raters[int(rng.integers(len(raters)))]
        u = rng.random()
        if u < rater.no_pick:
            vote = "tie" if u < rater.no_pick / 2 else "both_bad"
        else:
            p = 1 / (1 + np.exp(-rater.strength * (theta[i] - theta[j])))
            vote = "left" if rng.random() < p else "right"
        votes.append(Vote(f"case{int(rng.integers(cases))}", methods[i], methods[j], vote, rater.name))
    return methods, votes


def population_theta(theta: Sequence[float], raters: Sequence[SimulatedRater]) -> np.ndarray:
    """The BT scores the simulated population implies (the fit on infinitely many votes, raters and
    pairs drawn uniformly): what the bootstrap intervals should cover. Same order as ``theta``; with
    raters of mixed strength it is ``theta`` shrunk, not ``theta`` itself."""
    theta = np.asarray(theta, float)
    gap = theta[:, None] - theta[None, :]
    share = np.mean([r.p_first(gap) for r in raters], axis=0)
    np.fill_diagonal(share, 0.0)
    return fit_bt(share * 1e6, prior=0.0, tol=1e-13)


SIM_THETA = np.linspace(-2.0, 2.0, 8)  # the simulation's 8 methods, true log-strengths


def simulated_raters(n: int = 20) -> list[SimulatedRater]:
    """Raters from weak (strength 0.5) to strong (1.5) preference, each with 10% tie / both-bad votes."""
    return [SimulatedRater(f"r{k}", float(s), 0.1) for k, s in enumerate(np.linspace(0.5, 1.5, n))]


def simulation_study(sims: int, rounds: int, seed: int = 0, votes: int = 2000) -> dict[str, float]:
    """Kendall tau of the fitted order against the true one, and coverage of the 95% bootstrap
    intervals of the population BT scores (:func:`population_theta`), over ``sims`` simulations of
    ``votes`` votes over the 8 methods of :data:`SIM_THETA` by :func:`simulated_raters`."""
    rng = np.random.default_rng(seed)
    raters = simulated_raters()
    truth = population_theta(SIM_THETA, raters)
    taus, cover, all_cover = [], [], []
    for sim in range(sims):
        methods, drawn = simulate_votes(SIM_THETA, raters, votes, rng)
        table = ratings_table(drawn, methods, rounds=rounds, seed=seed * 100_000 + sim)
        taus.append(_number(kendall_tau_b(table["theta"], SIM_THETA)))
        inside = (table["lower"] <= truth) & (truth <= table["upper"])
        cover.append(inside.mean())
        all_cover.append(inside.all())
    return {
        "simulations": sims,
        "votes_per_simulation": votes,
        "bootstrap_rounds": rounds,
        "kendall_tau_mean": float(np.mean(taus)),
        "kendall_tau_min": float(np.min(taus)),
        "interval_coverage": float(np.mean(cover)),
        "simulations_with_all_8_covered": float(np.mean(all_cover)),
    }


# --- CSV export ---------------------------------------------------------------------------------------

CSV_COLUMNS = ("case_id", "method_a", "method_b", "winner", "vote", "rater")


def write_pairwise_csv(votes: Sequence[Vote], path: str | os.PathLike[str]) -> Path:
    """Votes as the pairwise CSV ``flowstudio bench fit-weights`` reads (``both_bad`` as ``tie``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    winner = {"left": "a", "right": "b", "tie": "tie", "both_bad": "tie"}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for v in votes:
            writer.writerow([v.case_id, v.left, v.right, winner[v.vote], v.vote, v.rater])
    return path
