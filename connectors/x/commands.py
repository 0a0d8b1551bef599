"""X helpers: ``syncd x authorize ACCOUNT`` gives syncd an account's own OAuth 2.0 user token,
so its mentions and posts are read as owned reads (see :mod:`connectors.x.auth.authorize`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from syncd.errors import UserError

if TYPE_CHECKING:
    from connectors.x.auth.auth import OAuth2UserAuth
    from connectors.x.source import XSettings
    from syncd.contracts.commands import CommandContext, Configured


def group(context: CommandContext) -> click.Group:
    """``syncd x``, its commands handed ``context`` as their click context's object."""
    return click.Group(
        "x", commands=[authorize], help="X helpers.", context_settings={"obj": context}
    )


@click.command("authorize")
@click.argument("account")
@click.option("--source", "source_name", help="The X source, when several list ACCOUNT.")
@click.option(
    "--redirect-url",
    help="Finish the waiting authorization with the address X sent the browser to (scripts).",
)
@click.option("--code", help="Finish the waiting authorization with only its code (scripts).")
@click.pass_obj
def authorize(
    context: CommandContext,
    account: str,
    source_name: str | None,
    redirect_url: str | None,
    code: str | None,
) -> None:
    """Authorize syncd to read ACCOUNT's mentions and posts with ACCOUNT's own OAuth 2.0 user
    token, which X bills as owned reads. Prints an address to open signed in to X as ACCOUNT;
    after approving, paste the address X sends the browser to. ACCOUNT needs a
    [sources.user_auth.ACCOUNT] table with type = "oauth2". No token is ever printed."""
    from connectors.x.auth.authorize import Authorization, session_for

    if redirect_url is not None and code is not None:
        raise click.UsageError("give --redirect-url or --code, not both")
    handle = account.strip().removeprefix("@")
    source, auth = _oauth2_account(context.settings(), handle, source_name)
    session = session_for(source.api_base_url, source.timeout)
    try:
        flow = Authorization(handle, auth, session)
        if redirect_url is not None or code is not None:
            token = flow.finish(
                code if code is not None else str(redirect_url), bare_code=code is not None
            )
        else:
            pending = flow.start()
            click.echo(
                f"1. Open this address in a browser signed in to X as @{handle} and approve:\n\n"
                f"   {pending.url()}\n\n"
                f"2. X then sends the browser to {pending.redirect_uri}?state=…&code=… (the page "
                "itself may not load). Copy that whole address from the address bar."
            )
            try:
                pasted = click.prompt("Paste it (or only its code)", prompt_suffix=": ")
            except click.Abort:
                raise UserError(
                    f"not finished: within 15 minutes, run `syncd x authorize {handle}` again, "
                    f"or `syncd x authorize {handle} --redirect-url 'ADDRESS'`"
                ) from None
            token = flow.finish(pasted)
    finally:
        session.close()
    click.echo(
        f"saved the OAuth 2.0 token of @{token.username} (user id {token.user_id}) to "
        f"{auth.token_file}. syncd reads @{handle}'s mentions and posts with it from its next "
        f"poll; if the account is parked, `syncd resume {source.name}:{handle}`."
    )


def _oauth2_account(
    loaded: Configured, handle: str, source_name: str | None
) -> tuple[XSettings, OAuth2UserAuth]:
    """The X source listing ``handle`` and its ``[sources.user_auth.HANDLE]`` table."""
    from connectors.x.auth.auth import OAuth2UserAuth
    from connectors.x.source import XSettings

    found = [
        s
        for s in loaded.sources
        if isinstance(s, XSettings)
        and handle.lower() in (a.lower() for a in s.accounts)
        and source_name in (None, s.name)
    ]
    if not found:
        where = f"source {source_name!r}" if source_name else "any X source"
        raise UserError(f"@{handle} is not in the accounts of {where} in {loaded.path}")
    if len(found) > 1:
        names = ", ".join(s.name for s in found)
        raise UserError(f"@{handle} is in several X sources ({names}): choose one with --source")
    source = found[0]
    auth = source.user_auth.get(handle.lower())
    if not isinstance(auth, OAuth2UserAuth):
        kind = "OAuth 1.0a tokens come from the developer console" if auth else "none is set"
        raise UserError(
            f'@{handle} needs [sources.user_auth.{handle}] with type = "oauth2" in source '
            f"{source.name!r} ({kind}; see config.example.toml)"
        )
    return source, auth
