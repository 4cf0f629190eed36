"""Values shared by every layer: unit and run states, the records that pass between layers,
durations and sizes, structured logging."""
