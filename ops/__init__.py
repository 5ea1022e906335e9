"""Operator commands: the ``coldchain`` command line, broker accounts, Grafana as code."""
