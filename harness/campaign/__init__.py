"""The orchestrator: workload + options -> plan -> units -> results (run)."""
