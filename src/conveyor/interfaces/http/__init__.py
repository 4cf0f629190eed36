"""The one HTTP app: items, steps, dashboard, metrics and health, behind one auth guard."""
