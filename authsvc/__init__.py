"""authsvc: a security-hardened login service (forward auth and delegated login)."""

__version__ = "0.1.0"
