"""The characters leadloop refuses or strips from text, defined once (pure).

Each rule is a union of the same few classes, so a reader sees at a glance what each kind of field allows.
"""

import re

_C0 = r"\x00-\x1f"  # NUL, tabs, line feeds, escapes
_C0_BUT_LINES = r"\x00-\x08\x0b\x0c\x0e-\x1f"  # C0 without tab, line feed and carriage return
_DEL = r"\x7f"
_C1 = r"\x80-\x9f"  # NEL (\x85) among them: a line break to some mail software
_SEPARATORS = r"\u2028\u2029"  # Unicode's line and paragraph separators
_INVISIBLE = r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"  # zero-width and direction marks
_SURROGATES = r"\ud800-\udfff"  # half a character: no encoder writes it

#: One-line text that may reach a header, a subject or a CSV cell: names, companies, subjects, addresses.
CONTROL_RE = re.compile(f"[{_C0}{_DEL}{_C1}{_SEPARATORS}]")
#: Half a UTF-16 pair, which JSON and Python carry but no database, header or page can hold.
LONE_SURROGATE = re.compile(f"[{_SURROGATES}]")
#: A one-line field of an HTTP request (a page address, a reason, an id).
REQUEST_CONTROL = re.compile(f"[{_C0}{_DEL}{_SURROGATES}]")
#: A rep's note: lines and tabs are the note's own.
NOTE_CONTROL = re.compile(f"[{_C0_BUT_LINES}{_DEL}{_SURROGATES}]")
#: Text a stranger wrote that a rep reads (a page's path or title): also nothing invisible or reordering.
UNSHOWABLE = re.compile(f"[{_C0}{_DEL}{_C1}{_INVISIBLE}{_SEPARATORS}{_SURROGATES}]")
