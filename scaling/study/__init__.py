"""Analysis of results (pandas tables, matplotlib figures; ``python -m scaling.analysis``) and
the provenance records that every result file carries."""
