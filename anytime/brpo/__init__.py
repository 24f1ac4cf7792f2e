"""The BRPO algorithm (DESIGN.md §2): budgets, cuts and summary prompts, advantages, loss, packing."""
