"""The study engine (a config file in: :mod:`~scaling.study.config`; the plan, run store, runner
and report; ``python -m scaling.study``), the analysis of results (pandas tables, matplotlib
figures; ``python -m scaling.analysis``) and the provenance records that every result file
carries."""
