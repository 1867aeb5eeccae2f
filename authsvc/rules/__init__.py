"""The rules layer: authsvc's security decisions as pure functions of plain values.

Redirect targets, passwords, usernames, secret keys, client addresses, forward-auth requests,
same-origin and stream-safe text. Standard library only, and nothing of authsvc above this layer
(checked by the import contracts in pyproject.toml, ``tests/meta/test_layers.py``), so each can be
called a million times by a property test.
"""
