"""The lab-ops dashboard served by every worker at ``/``.

``view`` folds the alert topic into the whole system's open episodes (pure), ``trend`` draws a
patient's history for one episode (pure), ``feed`` reads the alert topic into the view, and
``routes`` serves the page, its static files and its JSON API.
"""
