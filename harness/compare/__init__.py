"""`crashtest compare`: the storage stacks side by side (run, measure, report)."""
