"""Prometheus recording and alerting rules built from the KPI catalog and the user's targets.

``alerts.build.build_files(config)`` returns the rule files as text; ``alerts.build.write``
writes them (``carekpi alerts build`` and ``carekpi generate`` call it).
"""
