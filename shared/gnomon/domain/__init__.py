"""The pure core: models, specs, policies and errors. No I/O, no wall clock."""
