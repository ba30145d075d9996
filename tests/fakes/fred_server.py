"""A fake of the FRED API's ``/fred/series/observations`` endpoint (XML, as fredapi reads it).

Answers the way ``api.stlouisfed.org`` does for the requests fredapi 0.5.2
sends (``series_id``, ``observation_start``, ``observation_end``, ``api_key``;
no ``file_type``, hence XML):

* ``200`` with ``<observations ... count="N" ...>`` holding one
  ``<observation realtime_start=".." realtime_end=".." date="YYYY-MM-DD"
  value=".."/>`` per date in ``[observation_start, observation_end]``;
  a missing value is written ``"."``; an empty window is ``count="0"`` with
  no children;
* errors are ``<?xml version="1.0" encoding="utf-8" ?>`` followed by
  ``<error code="400" message="..."/>`` with FRED's own texts: HTTP 400 for a
  missing, malformed or unregistered ``api_key`` and for an unknown series
  (``"Bad Request.  The series does not exist."``).

Test knobs on :class:`FredState`: ``leak`` ignores ``observation_end`` so a
test can prove the provider clips; ``realtime`` is the vintage date written
in ``realtime_start``/``realtime_end``.  Rate limits and 5xx come from
:meth:`FakeServer.fail_next` with :func:`fred_error` bodies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from tests.fakes.http import FakeHandler, FakeServer

XML_HEADERS = {"Content-Type": "text/xml; charset=UTF-8"}
_KEY_SHAPE = re.compile(r"^[a-z0-9]{32}$")
_KEY_HELP = "Read https://fred.stlouisfed.org/docs/api/api_key.html for more information."

API_KEY_NOT_SET = f"Bad Request.  Variable api_key is not set.  {_KEY_HELP}"
API_KEY_MALFORMED = (
    "Bad Request.  The value for variable api_key is not a 32 character alpha-numeric "
    f"lower-case string.  {_KEY_HELP}"
)
API_KEY_NOT_REGISTERED = (
    f"Bad Request.  The value for variable api_key is not registered.  {_KEY_HELP}"
)
SERIES_DOES_NOT_EXIST = "Bad Request.  The series does not exist."
# FRED does not document its 429 text; this is the shape of its other errors.
RATE_LIMITED = "Too Many Requests.  Exceeded Rate Limit"


def fred_error(code: int, message: str) -> str:
    """FRED's XML error body for HTTP ``code``."""
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        f'<error code="{code}" message={quoteattr(message)}/>'
    )


@dataclass
class FredState:
    """What the fake serves.

    Attributes
    ----------
    series:
        Frames keyed by upper-case series id with columns ``date, value``
        (NaN values are served as ``"."``).
    api_key:
        The one registered key (32 lower-case alphanumerics).
    realtime:
        The vintage date (``realtime_start`` = ``realtime_end``).
    leak:
        Ignore ``observation_end`` and serve every later observation too.
    """

    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    api_key: str = "0123456789abcdef0123456789abcdef"
    realtime: date = date(2024, 6, 28)
    leak: bool = False


def _format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "."
    return repr(float(value)) if not isinstance(value, str) else value


class FredHandler(FakeHandler):
    """Routes of the fake FRED API."""

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        state: FredState = self.fake.state
        params = {k: v[-1] for k, v in query.items()}
        if method != "GET" or not path.startswith("/fred/"):
            return 404, XML_HEADERS, fred_error(404, "Not Found")
        key = params.get("api_key")
        if not key:
            return 400, XML_HEADERS, fred_error(400, API_KEY_NOT_SET)
        if not _KEY_SHAPE.match(key):
            return 400, XML_HEADERS, fred_error(400, API_KEY_MALFORMED)
        if key != state.api_key:
            return 400, XML_HEADERS, fred_error(400, API_KEY_NOT_REGISTERED)
        if path != "/fred/series/observations":
            return 404, XML_HEADERS, fred_error(404, "Not Found")
        return self._observations(state, params)

    def _observations(
        self, state: FredState, params: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        series_id = params.get("series_id", "")
        if not series_id:
            return 400, XML_HEADERS, fred_error(400, "Bad Request.  Variable series_id is not set.")
        frame = state.series.get(series_id.upper())
        if frame is None:
            return 400, XML_HEADERS, fred_error(400, SERIES_DOES_NOT_EXIST)
        try:
            start = date.fromisoformat(params.get("observation_start", "1776-07-04"))
            end = date.fromisoformat(params.get("observation_end", "9999-12-31"))
        except ValueError:
            return (
                400,
                XML_HEADERS,
                fred_error(400, "Bad Request.  Variable observation_start is not a valid date."),
            )
        if start > end:
            return (
                400,
                XML_HEADERS,
                fred_error(
                    400,
                    "Bad Request.  The value for variable observation_start is after "
                    "the value for variable observation_end.",
                ),
            )
        rt = state.realtime.isoformat()
        rows = []
        for row in frame.sort_values("date").itertuples(index=False):
            day = pd.Timestamp(row.date).date()
            if day < start or (day > end and not state.leak):
                continue
            rows.append(
                f'  <observation realtime_start="{rt}" realtime_end="{rt}" '
                f'date="{day.isoformat()}" value="{_format_value(row.value)}"/>'
            )
        header = (
            f'<observations realtime_start="{rt}" realtime_end="{rt}" '
            f'observation_start="{start.isoformat()}" observation_end="{end.isoformat()}" '
            'units="lin" output_type="1" file_type="xml" order_by="observation_date" '
            f'sort_order="asc" count="{len(rows)}" offset="0" limit="100000">'
        )
        xml = '<?xml version="1.0" encoding="utf-8" ?>\n' + header + "\n"
        xml += "".join(r + "\n" for r in rows) + "</observations>"
        return 200, XML_HEADERS, xml


def fred_server(state: FredState | None = None) -> FakeServer:
    """A :class:`FakeServer` running the fake FRED API (use as a context manager)."""
    return FakeServer(FredHandler, state or FredState())
