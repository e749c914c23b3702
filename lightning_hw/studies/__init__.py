"""Studies: many ``fit`` runs of one config, each in its own process.

- :mod:`~lightning_hw.studies.grid`: named variants (a grid), and the ``study`` command.
- :mod:`~lightning_hw.studies.runner`: the one runner of both (Optuna hands out the trials, one ``fit`` each).
- :mod:`~lightning_hw.studies.search`: a study file's ``search:`` section as Optuna objects.
- :mod:`~lightning_hw.studies.search_report`: trials table, ``best.yaml``, Optuna's plots.
"""
