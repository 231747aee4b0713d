"""CareKPI core: the KPI catalog, the logical data model, the config and metric names."""

__version__ = "0.1.0"
