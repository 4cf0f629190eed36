"""How people and programs reach Conveyor: the Python API (the composition root), the CLI and the
one HTTP app."""
