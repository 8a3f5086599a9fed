"""The aggregator: robust aggregation rules, outlier detection, contribution valuation and the deterministic
round pipeline (`aggregator.pipeline.run_round`). Pure computation: the round service that feeds it from the chain
and the content store is `backend.marketplace` (runner, recompute).

Submodules are imported where used (`from aggregator.rules import get_rule`), so importing the package stays
cheap; see docs/aggregator.md.
"""

__all__: list[str] = []
