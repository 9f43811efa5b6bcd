"""``mdq alerts``: route mdq's alerts to people through a Prefect automation."""

from __future__ import annotations

from typing import Annotated

import typer

alerts_app = typer.Typer(
    help="Route mdq alerts (Prefect events mdq.alert.*) to a webhook, Slack or e-mail.",
    no_args_is_help=True,
)


@alerts_app.command("setup")
def setup(
    webhook_url: Annotated[
        str | None,
        typer.Option(help="Post each alert as JSON {subject, body} to this URL (a new block)."),
    ] = None,
    block: Annotated[
        str | None,
        typer.Option(
            help="Use a saved Prefect notification block instead, TYPE-SLUG/NAME, e.g. "
            "slack-webhook/ops or sendgrid-email/oncall."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Name of the automation (and webhook block).")] = (
        "mdq-alerts"
    ),
) -> None:
    """Create the Prefect automation that sends one notification per mdq alert.

    mdq alerts once per problem streak (consecutive backfill failures, stale or broken series);
    each alert is a Prefect event mdq.alert.<kind>. Run this once against the Prefect server
    of PREFECT_API_URL; running it again replaces the automation. Exit 2 if it cannot."""
    from mdq.alerts import setup_alert_routing
    from mdq.cli import EXIT_COULD_NOT_RUN, console, err_console

    try:
        routing = setup_alert_routing(webhook_url=webhook_url, block=block, name=name)
    except (ValueError, RuntimeError, OSError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_COULD_NOT_RUN) from None
    console.print(
        f"automation {routing.automation_name} ({routing.automation_id}): events mdq.alert.* "
        f"→ block {routing.block}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``mdq alerts`` to the ``mdq`` app."""
    app.add_typer(alerts_app, name="alerts")
