"""CBC cytopenia monitor: detects new or worsening cytopenias in a stream of blood counts."""

__version__ = "0.1.0"
