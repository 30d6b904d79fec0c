"""leadloop's HTML pages (rep, unsubscribe, their answers, the demo site), with the headers that guard them."""

from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from leadloop import DATA_DIR

NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


class Pages:
    """The page templates, rendered with no-cache headers and (for leadloop's own pages) a strict policy."""

    def __init__(self, public_url: str) -> None:
        self.templates = Environment(
            loader=FileSystemLoader(str(DATA_DIR / "templates" / "pages")),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        # leadloop's pages (rep, unsubscribe, and their answers) load nothing, run no script, post their forms
        # only to this service and show in no frame: a page behind a rep's or a lead's link cannot be framed
        # to trick a click on its button (clickjacking)
        public = urlsplit(public_url)
        self.guard = {
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            f"form-action 'self' {public.scheme}://{public.netloc}; frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY",
        }

    def page(self, name: str, status: int = 200, *, guarded: bool = True, **context: Any) -> HTMLResponse:
        """A page; leadloop's own (`guarded`) with a Content-Security-Policy and X-Frame-Options: DENY."""
        body = self.templates.get_template(f"{name}.html.j2").render(**context)
        return HTMLResponse(body, status_code=status, headers={**NO_CACHE, **(self.guard if guarded else {})})
