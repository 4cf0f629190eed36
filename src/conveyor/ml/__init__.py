"""The ML lifecycle: datasets, checks, splits, search, training, registry, gate, batching, serving,
drift."""
