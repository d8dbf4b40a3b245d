"""The course studies, one module per study (``mnist`` and ``uci`` are packages: a lab shared by
several studies, or a benchmark split into units, specs and report); each has a ``run(ctx)``
that reads its declared options from ``ctx.options`` and returns a ``StudyResult``.
:mod:`bayesdl.experiments.catalogue` names them and imports a study's module only when it runs."""
