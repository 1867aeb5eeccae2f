"""The web layer: the Flask application and everything that speaks HTTP.

The app factory (``app``), blueprints (``views``), forms, errors, headers, rate limits, proxy
handling, Flask-Login glue, CSRF and cross-site checks, metrics hooks. Views turn the core's
outcomes into responses; the decisions themselves live in :mod:`authsvc.rules` and :mod:`authsvc.core`.
"""
