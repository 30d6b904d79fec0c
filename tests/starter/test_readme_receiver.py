"""The README's webhook receiver works as written: it takes a signed delivery once, refuses a forged one."""

import re
from datetime import UTC, datetime

import httpx

from leadloop import PROJECT_ROOT
from leadloop.infra.webhook_sender import signed_headers
from leadloop.services.outbound_webhooks import new_secret


async def test_the_readme_receiver_verifies_and_de_duplicates() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Webhooks to your CRM") :]
    code = re.search(r"A receiver in Python:\n\n```python\n(.*?)```", section, re.DOTALL)
    assert code, "the README's receiver example is gone"
    secret = new_secret()
    scope: dict[str, object] = {}
    exec(code[1].replace('"whsec_..."', repr(secret)), scope)
    body = '{"type":"lead.accepted","timestamp":"2026-12-01T09:30:00+00:00","data":{"lead_id":1}}'
    headers = signed_headers(secret, "msg_abc", body, datetime.now(UTC))
    forged = signed_headers(new_secret(), "msg_abd", body, datetime.now(UTC))
    transport = httpx.ASGITransport(app=scope["app"])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        first = await http.post("/hooks/leadloop", content=body, headers=headers)
        again = await http.post("/hooks/leadloop", content=body, headers=headers)
        bad = await http.post("/hooks/leadloop", content=body, headers=forged)
    assert first.json() == {"status": "ok"} and again.json() == {"status": "duplicate"}
    assert bad.status_code == 401
