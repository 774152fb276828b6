"""`signalfactory bots|orders|kill-switch` on SQLite and PostgreSQL, and bad input that
exits 2 with nothing stored."""

from __future__ import annotations

from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.audit import log as audit
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy
from tests.helpers import cli, fingerprint
from tests.integration.backup_fixtures import parse_json
from tests.trading_support import seed_bot


def test_bots_orders_and_kill_switch_commands(platform: Platform) -> None:
    with platform.database.write() as uow:
        tenant = accounts.create_tenant(uow, "acme").id
        add_strategy(uow, tenant, "always", rule_text="entry: close > 0")
    seeded = seed_bot(platform, tenant, "marked")

    made = cli("bots", "create", "cli-bot", "--tenant", "acme", "--strategy", "always",
               "--account", str(seeded.account_id), "--symbols", "BTC/USDT,ETH/USDT",
               "--allocation", "500", "--daily-loss-limit", "25", "--json")
    assert made.exit_code == 0, made.output
    bot = parse_json(made.stdout)
    assert (bot["status"], bot["limits"]["daily_loss_limit"]) == ("stopped", 25)
    listed = parse_json(cli("bots", "list", "--tenant", "acme", "--json").stdout)
    assert sorted(b["name"] for b in listed) == ["cli-bot", "marked"]
    status = parse_json(cli("bots", "status", str(seeded.bot_id), "--tenant", "acme",
                            "--json").stdout)
    assert status["positions"] == [{"symbol": "BTC/USDT", "quantity": 0.02,
                                    "average_price": 60_000.0}]
    orders = parse_json(cli("orders", "list", "--tenant", "acme", "--bot",
                            str(seeded.bot_id), "--json").stdout)
    assert len(orders) == 3
    shown = cli("orders", "show", str(orders[0]["id"]), "--tenant", "acme")
    assert parse_json(shown.stdout)["client_order_id"] == orders[0]["client_order_id"]

    before = fingerprint()
    for args in (("bots", "create", "x", "--tenant", "acme", "--strategy", "nope",
                  "--account", str(seeded.account_id), "--symbols", "BTC/USDT",
                  "--allocation", "1"),
                 ("bots", "create", "x", "--tenant", "acme", "--strategy", "always",
                  "--account", str(seeded.account_id), "--symbols", "BTC/USDT",
                  "--allocation", "-5"),
                 ("bots", "stop", str(bot["id"]), "--tenant", "acme"),  # already stopped
                 ("bots", "status", "999999", "--tenant", "acme"),
                 ("orders", "list", "--tenant", "acme", "--status", "lost"),
                 ("orders", "show", str(orders[0]["id"]), "--tenant", "default"),
                 ("kill-switch", "engage", "--reason", "x", "--scope", "bot"),
                 ("kill-switch", "engage", "--reason", " ", "--scope", "tenant"),
                 ("kill-switch", "engage", "--reason", "x", "--scope", "planet"),
                 ("kill-switch", "rearm", "--scope", "tenant", "--tenant", "nobody")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
    assert fingerprint() == before

    engaged = cli("kill-switch", "engage", "--scope", "tenant", "--tenant", "acme",
                  "--reason", "drill", "--json")
    assert engaged.exit_code == 0, engaged.output
    assert parse_json(engaged.stdout)["changed"] is True
    state = parse_json(cli("kill-switch", "status", "--json").stdout)
    assert [(s["scope"], s["scope_id"], s["engaged"]) for s in state["switches"]] == [
        ("tenant", tenant, True)]
    assert "1 kill switch(es) engaged" in cli("kill-switch", "status").stdout
    assert cli("kill-switch", "rearm", "--scope", "tenant", "--tenant", "acme").exit_code == 0
    resumed = cli("kill-switch", "resume", "--scope", "tenant", "--tenant", "acme")
    assert resumed.exit_code == 0 and "resumed (kill-switch)" in resumed.stdout
    with platform.database.read() as uow:
        actions = [e.action for e in audit.list_entries(uow, tenant_id=tenant, limit=1000)]
    assert actions[-3:] == ["kill_switch.engaged", "kill_switch.rearmed",
                            "kill_switch.resumed"]
    assert "bot.created" in actions
