"""Method cards of flowstudio's own methods: what the board shows for a seeded method's paper and code.

Papers are the ones :doc:`docs/methods.md` cites; "code" is the module in this repository that
implements the method (the board scores flowstudio's implementation, not the authors').
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    description: str
    paper: str | None
    code: str | None


_EDIT = "flowstudio-edit:"
CARDS: dict[str, Card] = {
    "identity": Card(
        "returns the source unchanged: the no-edit lower bound", None, "flowstudio/bench/methods.py"
    ),
    "ground-truth": Card(
        "returns the exact ground-truth target: the oracle upper bound", None, "flowstudio/bench/methods.py"
    ),
    f"{_EDIT}inversion": Card(
        "invert the source with the model, regenerate under the target prompt",
        None,
        "flowstudio/edit/inversion.py",
    ),
    f"{_EDIT}flowedit": Card(
        "FlowEdit: inversion-free editing along the difference of source and target velocities",
        "Kulikov et al. 2024, FlowEdit, arXiv:2412.08629",
        "flowstudio/edit/flowedit.py",
    ),
    f"{_EDIT}rf-solver": Card(
        "inversion editor with the second-order RF-Solver both ways",
        "Wang et al. 2024, Taming Rectified Flow for Inversion and Editing (RF-Solver), arXiv:2411.04746",
        "flowstudio/edit/inversion.py",
    ),
    f"{_EDIT}fireflow": Card(
        "RF-Solver's midpoint step reusing the previous midpoint velocity",
        "Deng et al. 2024, FireFlow, arXiv:2412.07517",
        "flowstudio/edit/inversion.py",
    ),
}


def card(method: str, description: str = "") -> Card:
    """The card of ``method``: the catalogue's, else one from the results' own description."""
    return CARDS.get(method) or Card(description, None, None)
