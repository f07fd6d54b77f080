"""Audit: verdicts (docs/design.md §2) with evidence, from a student (and usually its teacher)."""
