"""Defining a pipeline: the Pipeline and its decorators, step options and code versions, the
validated graph, retry policy, alarm rules."""
