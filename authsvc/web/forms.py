"""Reading form fields strictly: a clear 400 for what no browser form would send."""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Request, abort, request
from werkzeug.exceptions import BadRequest
from werkzeug.formparser import FormDataParser

from authsvc.rules.streamsafe import MAX_NON_STARTERS, is_stream_safe

# A row id in a URL path (``<ROW_ID:name>``): a positive integer a 32-bit database column holds.
# Werkzeug's plain ``int`` has no bound: 2**63 raised OverflowError in SQLite's driver (a 500) and
# 2**31 a DataError in PostgreSQL's (a false "database unavailable" 503); now such a path is a 404.
ROW_ID = "int(min=1, max=2147483647)"


class _FormDataParser(FormDataParser):
    """URL-encoded bodies decoded as multipart ones are: a percent-escape that is not UTF-8 becomes
    U+FFFD, which :func:`field` refuses. Werkzeug 3 re-quotes it as the text ``%FF`` instead,
    indistinguishable from a password that really contains ``%FF``."""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="replace")
        return stream, self.cls(items), self.cls()


class StrictRequest(Request):
    form_data_parser_class = _FormDataParser


# What the person sees for each refusal of :func:`value_problem` (a fixed set: error pages are cached).
REFUSALS = {
    "too_long": "A field is longer than this form accepts.",
    "invalid_characters": "A field contains characters no form sends (NUL, or bytes that are not UTF-8).",
    "combining_marks": f"A field has more than {MAX_NON_STARTERS} combining marks in a row, which no language "
                       "needs. Type it again.",
}


class FieldRefused(BadRequest):
    """A 400 whose description is the sentence from :data:`REFUSALS` shown to the person."""


def value_problem(value: str, max_chars: int) -> str | None:
    """Why a form value is refused before anything normalises it (a key of :data:`REFUSALS`), or
    None. Cheap and linear whatever the value: the length first, then NUL and U+FFFD (undecodable
    bytes), then the Stream-Safe bound on combining marks (authsvc.rules.streamsafe), which keeps the
    normalisation that follows linear too."""
    if len(value) > max_chars:
        return "too_long"
    if "\x00" in value or "\ufffd" in value:
        return "invalid_characters"
    if not is_stream_safe(value):
        return "combining_marks"
    return None


def field(name: str, max_chars: int, *, required: bool = True) -> str:
    """The value of form field ``name``; 400 if missing (when required) or repeated, and
    :class:`FieldRefused` (400, saying why) for a :func:`value_problem`."""
    values = request.form.getlist(name)
    if not values:
        if required:
            abort(400)
        return ""
    if len(values) > 1:
        abort(400)
    value = values[0]
    problem = value_problem(value, max_chars)
    if problem is not None:
        raise FieldRefused(REFUSALS[problem])
    return value


def checkbox(name: str) -> bool:
    return request.form.get(name, "") in ("on", "1", "true", "yes")
