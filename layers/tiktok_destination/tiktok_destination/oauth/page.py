"""The HTML page the browser TikTok redirected back sees: which accounts the credential can
now reach, or what went wrong and what to do; never a token or a code."""

from __future__ import annotations

import html

from tiktok_destination.adapters import secrets
from tiktok_destination.errors import ConfigurationError, DestinationError, OAuthError
from tiktok_destination.oauth.callback import CallbackResult
from tiktok_destination.oauth.state import _auth_link_command, _fmt_time

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:40rem;"
    "margin:3rem auto;padding:0 1rem;color:#161823;line-height:1.5}"
    "h1{font-size:1.4rem}.ok{color:#0a7d36}.fail{color:#b3261e}"
    "code{background:#f1f1f2;padding:.1rem .3rem;border-radius:3px}"
    "li{margin:.2rem 0}"
)


def _page(title: str, css_class: str, body: str) -> str:
    e = html.escape
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{e(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1 class="{css_class}">{e(title)}</h1>{body}</body></html>\n'
    )


def _with_code(text: str) -> str:
    """Escape ``text`` and show `backticked` commands as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_page(result_or_error: CallbackResult | BaseException) -> str:
    """A small self-contained HTML page for the browser TikTok redirected back here."""
    e = html.escape
    if isinstance(result_or_error, CallbackResult):
        r = result_or_error
        if r.advertisers:
            items = "".join(
                f"<li>{e(a.name)} (<code>{e(a.advertiser_id)}</code>)</li>"
                if a.name
                else f"<li><code>{e(a.advertiser_id)}</code></li>"
                for a in r.advertisers
            )
            accounts = (
                f"<p>It can now act for {len(r.advertisers)} advertiser "
                f"account{'s' if len(r.advertisers) != 1 else ''}:</p><ul>{items}</ul>"
            )
        else:
            accounts = (
                "<p><strong>No advertiser accounts were granted.</strong> Authorize again "
                f"and select the accounts: {_with_code(_auth_link_command(r.credential))}.</p>"
            )
        return _page(
            "TikTok authorization complete",
            "ok",
            f"<p>Credential <code>{e(r.credential)}</code> is authorized "
            f"({e(_fmt_time(r.authorized_at))}); its access token is stored in "
            f"Secrets Manager as <code>{e(r.secret_name)}</code>, replacing any earlier "
            "one.</p>"
            f"{accounts}"
            "<p>Runs of destinations that name this credential use the new token; steps "
            f"already running pick it up within {secrets.SECRET_MAX_AGE // 60} minutes. "
            "You can close this page.</p>",
        )

    err = result_or_error
    message = err.message if isinstance(err, DestinationError) else "unexpected error"
    if isinstance(err, OAuthError):
        title = "TikTok authorization not completed"
        after = (
            "<p>The credential's previously stored token, if any, is unchanged. The "
            "person who runs this destination can print a fresh link with "
            f"{_with_code(_auth_link_command(None))}.</p>"
        )
    elif isinstance(err, ConfigurationError):
        title = "Authorization callback is not set up"
        after = "<p>Ask the person who deployed this destination to fix the setup above.</p>"
    else:
        title = "TikTok did not complete the authorization"
        after = "<p>Nothing was stored. Wait a few minutes and use a new link.</p>"
    return _page(title, "fail", f"<p>{_with_code(message)}</p>{after}")
