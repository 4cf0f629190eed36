"""Running a run: planning units and cache keys, leasing and committing them, the one coordinator
lifecycle that batch runs, redrive, streams and joined coordinators share."""
