"""The pipeline's stages: the only place where configuration becomes arguments.

One module per stage, named as in the README picture; :mod:`~sparktf.stages.runner`
runs them in order and :mod:`~sparktf.stages.state` holds the typed records they
hand each other. Library packages never see a :class:`~sparktf.config.Config`.
"""
