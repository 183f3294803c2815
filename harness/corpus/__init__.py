"""The known-bug corpus: fixes undone, built, and run (entries, run)."""
