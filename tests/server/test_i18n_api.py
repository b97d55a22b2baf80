"""The API speaks the site's language (the shipped Dijon city: French) and any other on ``?lang=``.

The shipped tags.yaml/alarms.yaml with every endpoint unreachable: the junctions' communication-loss
system alarms come up on their own. /alarms and /journal answer in French by default (tags.yaml
``lang: fr``, no server override), in English with ``?lang=en``, and refuse a language without catalogue. Refusal reasons (an alarm action, a login) read the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from scada.i18n import get_language, set_language
from tests.server.conftest import login, nowhere_endpoints, running_server
from tests.server.test_e2e import until


async def test_alarms_and_journal_in_the_site_language_and_on_request(tmp_path: Path) -> None:
    before = get_language()
    try:
        async with running_server(tmp_path / "data", endpoints=nowhere_endpoints(), lang=None) as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=30) as c:
            assert server.config.lang == "fr" and get_language() == "fr"
            h = await login(c, "op")
            cfg = (await c.get("/api/v1/health", headers=h)).json()["config"]
            assert (cfg["lang"], cfg["timezone"]) == ("fr", "Europe/Paris")  # what a console asks in and shows

            async def comm_lost(lang: str | None) -> list[dict[str, Any]]:
                params = {"lang": lang} if lang else {}
                r = await c.get("/api/v1/alarms", headers=h, params=params)
                assert r.status_code == 200, r.text
                return [a for a in r.json()["alarms"] if a["rule"] == "system.junction.comm_lost"]

            fr = await until("the junctions' comm-loss alarms", lambda: comm_lost(None), timeout=60)
            one = fr[0]
            assert one["message"] == f"{one['equipment']} ({one['commune']}) : communication perdue, état inconnu"
            en = {a["id"]: a["message"] for a in await comm_lost("en")}
            assert en[one["id"]] == f"{one['equipment']} ({one['commune']}): communication lost, its state is unknown"

            for lang, want in ((None, one["message"]), ("en", en[one["id"]])):
                r = await c.get("/api/v1/alarms/console", headers=h, params={"lang": lang} if lang else {})
                assert want in [a["message"] for a in r.json()["critical"] if a["id"] == one["id"]]

            async def journal(lang: str | None) -> list[str]:
                params = {"equipment": one["equipment"], **({"lang": lang} if lang else {})}
                r = await c.get("/api/v1/journal", headers=h, params=params)
                assert r.status_code == 200, r.text
                return [e["message"] for e in r.json()["entries"] if e["alarm"] == one["id"]]

            assert one["message"] in await journal(None)
            assert one["message"] in await journal("fr")
            assert en[one["id"]] in await journal("en")
            assert one["message"] not in await journal("en")
            r = await c.get("/api/v1/alarms", headers=h, params={"lang": "de"})
            assert r.status_code == 422 and "lang" in r.text

            # refusals: the reason travels as an English msgid, is journalled so, and is read in either language
            p1 = one["id"] if one["priority"] == 1 else None
            assert p1 is not None, one  # a junction's comm loss is priority 1: it cannot be shelved
            body = {"reason": "test", "duration_s": 60}
            r = await c.post(f"/api/v1/alarms/{p1}/shelve", headers=h, json=body)
            assert r.status_code == 409 and r.json()["code"] == "alarm_action_refused"
            assert r.json()["why"].endswith("les alarmes de priorité 1 (critiques) ne peuvent pas être mises de côté")
            r = await c.post(f"/api/v1/alarms/{p1}/shelve", headers=h, json=body, params={"lang": "en"})
            assert r.json()["why"].endswith("priority-1 (critical) alarms cannot be shelved")
            r = await c.get("/api/v1/journal", headers=h, params={"equipment": one["equipment"], "lang": "fr"})
            refused = [e for e in r.json()["entries"] if e["outcome"] == "refused" and e["alarm"] == p1]
            assert refused and refused[0]["detail"] == \
                "les alarmes de priorité 1 (critiques) ne peuvent pas être mises de côté (test)"  # + the reason given
            r = await c.post("/api/v1/auth/login", json={"user": "op", "password": "not the password"})
            assert r.status_code == 401 and r.json() == {
                "what": r.json()["what"], "code": "login_failed",
                "why": "utilisateur inconnu, mot de passe erroné ou compte désactivé"}
    finally:
        set_language(before)
