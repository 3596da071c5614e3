"""`uvd validate OUT`: the manifest against the files; exit non-zero with a list of problems."""
from __future__ import annotations

import argparse

from uvd.layout import manifest as manifest_url
from uvd.storage import read_json
from uvd.validate import validate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd validate", description=__doc__)
    p.add_argument("out", help="output folder or URL of a build")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    args = p.parse_args(argv)
    problems = validate(args.out, decode_images=not args.no_decode)
    if problems:
        print(f"{len(problems)} problems:")
        for prob in problems:
            print("  " + prob)
        return 1
    manifest = read_json(manifest_url(args.out.rstrip("/")))
    t = manifest["totals"]
    print(f"OK: {t['units_done']} units, {t['sentences']} sentences, {t['images']} images, "
          f"inputs {t['inputs']} = ok {t['ok']} + failed {t['failed']}")
    return 0
