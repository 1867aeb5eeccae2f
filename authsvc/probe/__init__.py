"""``authsvc probe``: checks a running deployment from outside, over HTTPS, as a browser and an
attacker would see it (issue 18).

Layout: one module per family of checks, each a set of pure judging functions of plain values
(parsed responses, header lists, URLs) plus the hostile samples it sends; :mod:`.client` is the only
module that touches the network; :mod:`.runner` sends the samples and hands the answers to the
judges; :mod:`.report` turns results into a table, JSON or SARIF. The package imports nothing but
the standard library (tests/meta/test_layers.py), so it judges a deployment without trusting the
code it judges.
"""
