"""The core layer: settings, policy, the stores and the flows, with no Flask and no Werkzeug.

Settings and policy (``config``, ``policy``), the database (``db``, ``models``, migrations), the
stores (accounts, sessions, remember-me, devices, throttle, the verify cache), argon2 (``hashing``),
cookie signing, the audit log and the login flow. Each takes its collaborators (engine, clock,
policy) as arguments, so tests hand in a frozen clock or a failing store.
"""
