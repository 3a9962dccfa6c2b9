"""Online experiments (issue 17): who sees which arm, the shopper simulator, the report.

* :mod:`~sparktf.experiments.assignment`: the sticky hash of a unit (user, or session for
  anonymous traffic) to an arm, the arm-model grammar, and the fields an impression carries.
* :mod:`~sparktf.experiments.stats`: the user-level statistics (delta method, sample ratio).
* :mod:`~sparktf.experiments.simulator`: shoppers from the synthetic generator's own truth,
  driving a running server over HTTP.
* :mod:`~sparktf.experiments.report`: the event table turned into per-arm results, lifts
  with intervals, the sample-ratio test, guardrails, a chart, and the decision.

The server (:mod:`sparktf.serving`) imports only the assignment; the stage
:mod:`sparktf.stages.experiment` turns the config into the arguments of the rest.
"""
