"""authsvc's own static rules, checked over the package's syntax trees (no import, no execution).

Bandit and ruff know Python; these rules know authsvc: where a redirect target may come from, what
counts as request data, which names hold secrets. They run as tests
(tests/meta/test_static_rules.py) and in ``scripts/security-scan`` (SARIF).

Rules
-----
``AUTHSVC001 redirect-target``
    ``redirect(x)`` and a ``Location`` header take only a constant, a ``url_for(...)`` result, or
    the validator's output: ``d.target`` where ``d`` came from :func:`authsvc.rules.redirects.validate_next`
    or from a function annotated ``-> RedirectDecision`` (``next_decision``), or the URL of
    ``login_location(...)`` (which runs ``validate_next`` itself) or ``step_up_location(...)`` (which wraps it).
``AUTHSVC002 request-to-sink``
    No request value (``request.args/form/values/headers/cookies/json/data/...``, or the result of
    a package function that returns one, such as ``authsvc.web.forms.field``) reaches a redirect, a
    ``Location`` header, a template string (``from_string``, ``Template``, ``Markup``) or SQL text
    (``text(...)``, ``.execute(...)``, ``.exec_driver_sql(...)``) without passing a validator.
``AUTHSVC003 sql-string-building``
    SQL text is never built from strings at run time (f-string, ``+``, ``%``, ``.format``); use
    SQLAlchemy expressions or bound parameters.
``AUTHSVC004 render-template-string``
    ``render_template_string`` is not used at all: templates live in files, autoescaped.
``AUTHSVC005 secret-in-log``
    No logging call (``logger.*``, ``log.*``, ``logging.*``, ``audit.emit``, ``_audit``) receives a
    variable, attribute or keyword named like a secret: password, passwd, token, cookie, secret,
    csrf, validator, key (as a word of the identifier: ``session_token`` and ``tokens`` count,
    ``monkey`` does not). Inside ``fingerprint()``, ``len()``, ``bool()`` or ``type()`` a name is
    not logged as such.

Taint tracking is deliberately simple and errs towards reporting: within a function, a name is
request data if any assignment to it involves request data (flow-insensitive), and any expression
built from request data is request data, except the result of a validator (``validate_next``,
functions returning ``RedirectDecision``, ``url_for``, ``login_location``). Across the package,
functions that return request data (directly or through each other) are sources too.

Findings can be silenced only by changing the code; there is no suppression comment.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RULES = {
    "AUTHSVC001": ("redirect-target",
                   "A redirect or Location header takes only url_for(), a constant, or validate_next's output."),
    "AUTHSVC002": ("request-to-sink",
                   "Request data reaches a redirect, Location header, template string or SQL text unvalidated."),
    "AUTHSVC003": ("sql-string-building", "SQL text is built from strings at run time."),
    "AUTHSVC004": ("render-template-string", "render_template_string is not allowed; use a template file."),
    "AUTHSVC005": ("secret-in-log", "A logging call receives a value named like a password, token, cookie or secret."),
}

REQUEST_SOURCES = frozenset({
    "args", "form", "values", "headers", "cookies", "json", "data", "files", "get_json", "get_data",
    "query_string", "url", "full_path", "path", "base_url", "stream", "environ",
})
DECISION_PRODUCERS = frozenset({"validate_next"})  # plus every function annotated -> RedirectDecision
# response_location (authsvc.rules.oidc_redirects): an OpenID client's redirect_uri, re-checked
# against the client's registered list where the Location is built; logout_location
# (authsvc.rules.oidc_logout): a post_logout_redirect_uri, the same way.
SAFE_URL_PRODUCERS = frozenset({"url_for", "response_location", "logout_location"})
# Return (location, decision) with the location built from validate_next's target only.
SAFE_URL_PAIR_PRODUCERS = frozenset({"login_location", "step_up_location"})  # the second wraps the first
SQL_TEXT_CALLS = frozenset({"text"})
SQL_EXECUTE_METHODS = frozenset({"execute", "exec_driver_sql", "executescript", "executemany"})
TEMPLATE_STRING_CALLS = frozenset({"from_string", "Template", "Markup"})
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log",
                         "emit"})
LOG_OBJECTS = frozenset({"logger", "log", "logging", "audit", "_log", "_logger", "LOG", "LOGGER"})
LOG_FUNCTIONS = frozenset({"_audit"})
SENSITIVE_WORDS = frozenset({"password", "passwd", "token", "cookie", "secret", "csrf", "validator", "key"})
NOT_LOGGED_AS_IS = frozenset({"fingerprint", "len", "bool", "type"})

TAINTED, DECISION, SAFE_URL, CONST = "tainted", "decision", "safe_url", "const"


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    col: int
    rule: str
    message: str

    @property
    def name(self) -> str:
        return RULES[self.rule][0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col + 1}: {self.rule} {self.name}: {self.message}"


@dataclass
class PackageFacts:
    """What one module needs to know about the others: which functions return request data, and
    which return a RedirectDecision."""

    tainted_returns: set[str] = field(default_factory=set)
    decision_producers: set[str] = field(default_factory=lambda: set(DECISION_PRODUCERS))


# --- helpers ---------------------------------------------------------------------------------------


def words(identifier: str) -> list[str]:
    """``sessionToken`` -> ["session", "token"]; ``remember_tokens`` -> ["remember", "tokens"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier)
    return [w for w in spaced.lower().split("_") if w]


def is_sensitive(identifier: str) -> bool:
    return any(w in SENSITIVE_WORDS or (w.endswith("s") and w[:-1] in SENSITIVE_WORDS) for w in words(identifier))


def call_name(call: ast.Call) -> str | None:
    """The called function's own name: ``sa.text`` -> "text", ``url_for`` -> "url_for"."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def is_request_read(node: ast.AST) -> bool:
    """``request.args``, ``request.form.get``, ``flask.request.headers`` ..."""
    if isinstance(node, ast.Attribute) and node.attr in REQUEST_SOURCES:
        base = node.value
        return (isinstance(base, ast.Name) and base.id == "request") or \
            (isinstance(base, ast.Attribute) and base.attr == "request")
    return False


def annotated_decision(annotation: ast.AST | None) -> bool:
    """``-> RedirectDecision`` exactly (a tuple or Optional holding one is not a decision)."""
    return annotation is not None and ast.unparse(annotation).strip("'\"") == "RedirectDecision"


def functions(tree: ast.AST) -> Iterable[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def own_nodes(func: ast.AST) -> Iterable[ast.AST]:
    """Nodes of ``func``'s body, without descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


# --- the analysis of one scope ---------------------------------------------------------------------


class Scope:
    """Labels of the names of one function (or the module body), flow-insensitively."""

    def __init__(self, node: ast.AST, facts: PackageFacts) -> None:
        self.node = node
        self.facts = facts
        self.env: dict[str, set[str]] = {}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if arg.annotation is not None and annotated_decision(arg.annotation):
                    self.env[arg.arg] = {DECISION}
        self._solve()

    def _assignments(self) -> Iterable[tuple[ast.AST, ast.AST | None, int | None]]:
        """(target, value, index): index is set when the target is one element of an unpacking."""
        for node in own_nodes(self.node) if not isinstance(self.node, ast.Module) else self._module_nodes():
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    yield from self._unpack(target, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                yield from self._unpack(node.target, node.value)
            elif isinstance(node, ast.NamedExpr):
                yield node.target, node.value, None
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                yield from self._unpack(node.target, node.iter)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                yield from self._unpack(node.optional_vars, node.context_expr)

    def _module_nodes(self) -> Iterable[ast.AST]:
        for stmt in self.node.body:
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield stmt
                yield from own_nodes(stmt)

    def _unpack(self, target: ast.AST, value: ast.AST):
        if isinstance(target, (ast.Tuple, ast.List)):
            for i, element in enumerate(target.elts):
                if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                    yield from self._unpack(element, value.elts[i])
                else:
                    yield from self._element(element, value, i)
        else:
            yield target, value, None

    def _element(self, element, value, index):
        if isinstance(element, ast.Starred):
            element = element.value
        yield element, value, index

    def _solve(self) -> None:
        """Iterate to a fixed point: a name is request data if any assignment to it is; it is a
        decision, safe URL or constant only if every assignment (and its annotation) says so."""
        grouped: dict[str, list[tuple[ast.AST | None, int | None]]] = {}
        for target, value, index in self._assignments():
            if isinstance(target, ast.Name):
                grouped.setdefault(target.id, []).append((value, index))
        params = dict(self.env)
        for _ in range(100):
            new = dict(params)
            for name, sources in grouped.items():
                sets = [self.labels(value, index) for value, index in sources]
                if name in params:
                    sets.append(params[name])
                if any(TAINTED in s for s in sets):
                    new[name] = {TAINTED}
                else:
                    new[name] = set.intersection(*sets)
            if new == self.env:
                return
            self.env = new

    def labels(self, node: ast.AST | None, index: int | None = None) -> set[str]:
        if node is None:
            return set()
        if isinstance(node, ast.Constant):
            return {CONST} if isinstance(node.value, (str, bytes)) else set()
        if isinstance(node, ast.Name):
            return set(self.env.get(node.id, set()))
        if is_request_read(node):
            return {TAINTED}
        if isinstance(node, ast.Call):
            return self._call_labels(node, index)
        if isinstance(node, ast.Attribute):
            base = self.labels(node.value)
            if node.attr == "target" and DECISION in base:
                return {SAFE_URL}
            return {TAINTED} if TAINTED in base else set()
        if isinstance(node, ast.Subscript):
            return {TAINTED} if TAINTED in self.labels(node.value) | self.labels(node.slice) else set()
        if isinstance(node, ast.IfExp):
            return self._all_safe([node.body, node.orelse], extra=self.labels(node.test))
        if isinstance(node, ast.BoolOp):
            return self._all_safe(node.values)
        if isinstance(node, ast.NamedExpr):
            return self.labels(node.value)
        if isinstance(node, ast.Starred):
            return self.labels(node.value)
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
        return {TAINTED} if any(TAINTED in self.labels(c) for c in children) else set()

    def _all_safe(self, nodes: list[ast.AST], extra: set[str] | None = None) -> set[str]:
        parts = [self.labels(n) for n in nodes]
        if any(TAINTED in p for p in parts):
            return {TAINTED}
        safe = {SAFE_URL, CONST}
        if parts and all(p & safe for p in parts):
            return {SAFE_URL}
        return set()

    def _call_labels(self, node: ast.Call, index: int | None) -> set[str]:
        name = call_name(node)
        if name in SAFE_URL_PAIR_PRODUCERS:
            return {SAFE_URL} if index == 0 else {DECISION} if index == 1 else set()
        if name in self.facts.decision_producers:
            return {DECISION}
        if name in SAFE_URL_PRODUCERS:
            return {SAFE_URL}
        if name in self.facts.tainted_returns and isinstance(node.func, ast.Name):
            return {TAINTED}
        parts = [node.func.value] if isinstance(node.func, ast.Attribute) else []
        parts += list(node.args) + [k.value for k in node.keywords]
        return {TAINTED} if any(TAINTED in self.labels(p) for p in parts) else set()

    def returns_tainted(self) -> bool:
        return any(isinstance(n, ast.Return) and TAINTED in self.labels(n.value) for n in own_nodes(self.node))


# --- the checks -------------------------------------------------------------------------------------


class ModuleChecker:
    def __init__(self, tree: ast.Module, path: str, facts: PackageFacts) -> None:
        self.tree = tree
        self.path = path
        self.facts = facts
        self.findings: list[Finding] = []

    def report(self, node: ast.AST, rule: str, message: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 1), getattr(node, "col_offset", 0),
                                     rule, message))

    def run(self) -> list[Finding]:
        self._banned_names()
        scopes = [Scope(self.tree, self.facts), *(Scope(f, self.facts) for f in functions(self.tree))]
        for scope in scopes:
            nodes = self._module_level_nodes() if isinstance(scope.node, ast.Module) else own_nodes(scope.node)
            for node in nodes:
                if isinstance(node, ast.Call):
                    self._call(node, scope)
                elif isinstance(node, ast.Assign):
                    self._location_assignment(node, scope)
                elif isinstance(node, ast.Dict):
                    self._location_dict(node, scope)
        return sorted(set(self.findings))

    def _module_level_nodes(self) -> Iterable[ast.AST]:
        for stmt in self.tree.body:
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield stmt
                yield from own_nodes(stmt)
            elif isinstance(stmt, ast.ClassDef):  # class bodies (not their methods)
                for inner in stmt.body:
                    if not isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield inner
                        yield from own_nodes(inner)

    def _banned_names(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id == "render_template_string" or \
                    isinstance(node, ast.Attribute) and node.attr == "render_template_string":
                self.report(node, "AUTHSVC004", "render_template_string renders a string as a template; "
                                                "use render_template with a file in authsvc/web/templates")
            elif isinstance(node, ast.alias) and node.name.split(".")[-1] == "render_template_string":
                self.report(node, "AUTHSVC004", "render_template_string is imported; use render_template")

    # redirects and Location headers
    def _check_url(self, node: ast.AST, value: ast.AST | None, scope: Scope, what: str) -> None:
        if value is None:
            return
        labels = scope.labels(value)
        if TAINTED in labels:
            self.report(node, "AUTHSVC002", f"request data reaches {what} ({ast.unparse(value)!r}) without validate_next")
        elif not labels & {SAFE_URL, CONST}:
            self.report(node, "AUTHSVC001", f"{what} takes {ast.unparse(value)!r}, which is neither url_for(), "
                                            "a constant, nor a RedirectDecision's .target")

    def _location_assignment(self, node: ast.Assign, scope: Scope) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and \
                    str(target.slice.value).lower() == "location":
                self._check_url(node, node.value, scope, "a Location header")

    def _location_dict(self, node: ast.Dict, scope: Scope) -> None:
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and str(key.value).lower() == "location":
                self._check_url(node, value, scope, "a Location header")

    def _call(self, node: ast.Call, scope: Scope) -> None:
        name = call_name(node)
        if name == "redirect":
            target = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "location"), None)
            self._check_url(node, target, scope, "redirect()")
        if name in ("set", "add") and isinstance(node.func, ast.Attribute) and node.args and \
                isinstance(node.args[0], ast.Constant) and str(node.args[0].value).lower() == "location":
            self._check_url(node, node.args[1] if len(node.args) > 1 else None, scope, "a Location header")
        if name in SQL_TEXT_CALLS or (name in SQL_EXECUTE_METHODS and isinstance(node.func, ast.Attribute)):
            self._sql(node, scope)
        if name in TEMPLATE_STRING_CALLS and node.args and TAINTED in scope.labels(node.args[0]):
            self.report(node, "AUTHSVC002", f"request data becomes a template string in {name}()")
        if self._is_log_call(node):
            self._log(node)

    def _sql(self, node: ast.Call, scope: Scope) -> None:
        if not node.args:
            return
        statement = node.args[0]
        if TAINTED in scope.labels(statement):
            self.report(node, "AUTHSVC002", f"request data reaches SQL text in {call_name(node)}()")
        elif self._built_string(statement, scope):
            self.report(node, "AUTHSVC003", f"SQL text built at run time in {call_name(node)}(); "
                                            "use SQLAlchemy expressions or bound parameters")

    def _built_string(self, node: ast.AST, scope: Scope) -> bool:
        if isinstance(node, ast.JoinedStr):
            return any(isinstance(v, ast.FormattedValue) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            return any(isinstance(side, (ast.Constant, ast.JoinedStr, ast.BinOp)) and
                       (not isinstance(side, ast.Constant) or isinstance(side.value, str))
                       for side in (node.left, node.right))
        if isinstance(node, ast.Call) and call_name(node) == "format" and isinstance(node.func, ast.Attribute):
            return True
        if isinstance(node, ast.Name):
            return any(self._built_string(value, scope) for target, value, _ in scope._assignments()
                       if isinstance(target, ast.Name) and target.id == node.id and value is not None)
        return False

    # logging
    def _is_log_call(self, node: ast.Call) -> bool:
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in LOG_FUNCTIONS
        if not isinstance(func, ast.Attribute) or func.attr not in LOG_METHODS:
            return False
        base = func.value
        owner = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        if func.attr == "emit":
            return owner in ("audit", "_audit")
        return owner in LOG_OBJECTS

    def _log(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is not None and is_sensitive(keyword.arg):
                self.report(keyword.value, "AUTHSVC005", f"logging call gets keyword {keyword.arg!r}")
        for value in [*node.args, *(k.value for k in node.keywords)]:
            for name in self._names_logged(value):
                self.report(value, "AUTHSVC005", f"logging call gets {name!r}")

    def _names_logged(self, node: ast.AST) -> Iterable[str]:
        if isinstance(node, ast.Call) and call_name(node) in NOT_LOGGED_AS_IS:
            return
        if isinstance(node, ast.Name) and is_sensitive(node.id):
            yield node.id
        elif isinstance(node, ast.Attribute) and is_sensitive(node.attr):
            yield dotted(node) or node.attr
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr) and not (isinstance(node, ast.Attribute) and child is node.value
                                                    and isinstance(child, ast.Name)):
                yield from self._names_logged(child)


# --- entry points -----------------------------------------------------------------------------------


def package_facts(trees: dict[str, ast.Module]) -> PackageFacts:
    facts = PackageFacts()
    for tree in trees.values():
        for func in functions(tree):
            if annotated_decision(func.returns):
                facts.decision_producers.add(func.name)
    changed = True
    while changed:  # a function returning another's request data returns request data
        changed = False
        for tree in trees.values():
            for func in functions(tree):
                if func.name not in facts.tainted_returns and func.name not in facts.decision_producers \
                        and Scope(func, facts).returns_tainted():
                    facts.tainted_returns.add(func.name)
                    changed = True
    return facts


def check_sources(sources: dict[str, str]) -> list[Finding]:
    """Check modules given as ``{path: source}`` together (one package)."""
    trees = {path: ast.parse(source, filename=path) for path, source in sources.items()}
    facts = package_facts(trees)
    findings: list[Finding] = []
    for path, tree in trees.items():
        findings += ModuleChecker(tree, path, facts).run()
    return sorted(findings)


def check_source(source: str, path: str = "snippet.py") -> list[Finding]:
    return check_sources({path: source})


def check_tree(root: Path, package: str = "authsvc") -> list[Finding]:
    base = root / package
    files = sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
    return check_sources({str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in files})


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2]
    findings = check_tree(root)
    for finding in findings:
        print(finding)
    print(f"astrules: {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
