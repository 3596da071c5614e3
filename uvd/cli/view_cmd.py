"""`uvd view OUT`: look at a build in the browser (sentences, failures, mixture, tokens).

Serves a read-only web app over a build, local or any fsspec URL, on loopback unless --host says
otherwise. At start it reads manifest.json and the units table only; each page reads what it shows.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd view", description=__doc__)
    p.add_argument("out", help="a build's output folder or URL (the folder holding manifest.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tokenizer", help="a tokenizer folder: /tokens/<sentence_id> decodes its token shard")
    p.add_argument("--per-page", type=int, default=24, help="sentences per dataset page")
    args = p.parse_args(argv)
    from uvd.cli.view.app import create_app

    try:
        app = create_app(args.out, tokenizer=args.tokenizer, per_page=args.per_page)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"uvd view: {err}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        logger.warning("uvd view: listening on %s: anyone who can reach this address can read the build "
                       "(there is no login); use the default 127.0.0.1 and an SSH tunnel where you can", args.host)
    import uvicorn

    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"uvd view: {args.out} → http://{shown}:{args.port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
