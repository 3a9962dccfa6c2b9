"""Watching production: the reference profile saved with each model version, the server's
sliding-window profile of its traffic and the drift between them
(:mod:`~sparktf.monitoring.profile`, :mod:`~sparktf.monitoring.window`), and the report of
online quality, drift and training/serving skew over the event table
(:mod:`~sparktf.monitoring.report`)."""
