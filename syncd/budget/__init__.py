"""API read budgets: the ledger (pure figures), the guard that holds reads past them, and
their metrics."""
