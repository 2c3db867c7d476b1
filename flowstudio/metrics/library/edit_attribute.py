"""Toy-world attribute accuracy: the edited attribute read off the output's pixels equals the target
(:func:`flowstudio.bench.metrics.attributes.attribute_accuracy`; the label read and expected go to the
case's ``details['attribute']``)."""

from __future__ import annotations

from flowstudio.bench.metrics.attributes import attribute_accuracy
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Skip, Value, metric


@metric(
    "attr_acc",
    suites=("edit",),
    tier="offline",
    higher_is_better=True,
    unit="",
    version="1",
    description="ShapeWorld: the edited attribute read off the output equals the target",
    needs=("output", "attributes"),
)
def attr_acc(x: Inputs) -> Value:
    result = attribute_accuracy(x["output"], x["attributes"], x.get("object_mask"))
    if "value" not in result:
        return Skip(result["reason"])
    x.detail("attribute", {k: v for k, v in result.items() if k != "value"})
    return float(result["value"])
