"""The inventory as an HTML page: jinja2 templates shipped in this package, autoescaped.

Every name on the page comes from users (claims, pods, NADs, Event messages), so
autoescaping is on for every template, whatever its file name, and undefined
variables fail loudly instead of rendering as empty.
"""

from __future__ import annotations

from urllib.parse import urlencode

import jinja2
from sriov_dra.inventory import InventoryPage

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("sriov_dra_operator", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_inventory(view: InventoryPage, *, source: str) -> str:
    """The page for ``view``; ``source`` says where the data comes from."""
    query = {"node": view.node} if view.node else {}
    if not view.node and view.pages > 1:
        query = {"page": str(view.page), "per_page": str(view.per_page)}
    return _ENV.get_template("inventory.html").render(
        view=view, source=source, query=urlencode(query)
    )


def render_error(status: int, title: str, message: str) -> str:
    """A short page saying what was wrong with the request and how to fix it."""
    return _ENV.get_template("error.html").render(status=status, title=title, message=message)
