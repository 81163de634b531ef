"""The benchmark wing (``reavise benchmark``, ``reavise report``): ``config`` (the YAML),
``grid`` (stages, cell planning, the worker pool, ``run_benchmark``), ``worker`` (``Cell``, the
unit of work of a worker process), ``tables`` (results.csv as tables), ``report`` (HTML page)."""
