"""Golden-vector runners, one module per case ``kind`` (module cases) or task (pipeline cases).

A module case runner lives in ``kind_<kind>.py`` and exposes::

    def run(meta: dict, weights: dict[str, Tensor], inputs: dict[str, Tensor]) -> dict[str, Tensor]

building our model from ``meta["config"]``, loading ``weights`` with ``strict=True`` (no renaming)
and returning every output it can produce under the case's output names (at least the primary ones).

A pipeline case runner lives in ``pipeline_<task>.py`` and exposes::

    def run(case_dir: Path, case: dict) -> dict[str, Tensor]

loading ``case["checkpoint"]`` (relative to ``case_dir``) with the product's normal loaders and
running the real pipeline with the case's parameters.
"""
