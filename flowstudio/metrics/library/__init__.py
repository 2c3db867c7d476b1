"""Metric declarations: every module here is imported by the registry on first use, and registers its
metrics. One file per metric, or per family of metrics that share one computation (through
:meth:`flowstudio.metrics.inputs.Inputs.cached`). See docs/guide_benchmark.md, "Adding a metric"."""
