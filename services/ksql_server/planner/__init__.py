"""Logical plans: source → filter → project → (partition by) → sink."""
