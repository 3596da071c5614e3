"""`uvd inspect PATH`: what is in a shard, a dataset folder or a whole output; a sentence's contact sheet."""
from __future__ import annotations

import argparse
import json
import sys

from uvd.shard_summary import contact_sheet, format_summary, is_token_shard, sentence_shards, summarise
from uvd.storage import glob


def inspect_path(path: str) -> str:
    """The summary of sentence shards, or of token shards (through tokenize_job.inspect_tokens)."""
    shards = sentence_shards(path)
    if not shards:
        tokens = glob(path, "**/part-*.parquet") if not path.endswith(".parquet") else []
        if tokens and is_token_shard(tokens[0]):
            from tokenize_job.inspect_tokens import summarise as summarise_tokens

            return summarise_tokens(path)
        return f"{path}: no shards found"
    if is_token_shard(shards[0]):
        from tokenize_job.inspect_tokens import summarise as summarise_tokens

        return summarise_tokens(path)
    return format_summary(summarise(shards))


def _inspect_tokens(path: str, sentence: str | None, tokenizer: str | None, out_png: str) -> int:
    """Token shards: the summary, and with --sentence a contact sheet of decoded images."""
    from tokenize_job.inspect_tokens import contact_sheet as token_sheet
    from tokenize_job.inspect_tokens import summarise as summarise_tokens

    try:
        print(summarise_tokens(path))
        if sentence is not None:
            if not tokenizer:
                print("uvd inspect: --tokenizer DIR is needed to decode tokens into a contact sheet", file=sys.stderr)
                return 2
            which: int | str = int(sentence) if sentence.isdigit() else sentence
            info = json.loads(token_sheet(path, which, tokenizer, out_png))
            print(f"contact sheet of {info['sentence_id']} ({info['images']} images, "
                  f"{'originals above decoded' if info['with_originals'] else 'decoded only'}) → {out_png}")
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"uvd inspect: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uvd inspect", description=__doc__)
    p.add_argument("path", help="a shard, a dataset folder (sentences/<name>) or an output folder/URL")
    p.add_argument("--sentence", help="sentence id or index: draw its contact sheet")
    p.add_argument("--out", help="contact sheet PNG (with --sentence)", default="sheet.png")
    p.add_argument("--tokenizer", help="token shards: decode codes with this tokenizer for the contact sheet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if args.tokenizer or (args.sentence and not sentence_shards(args.path)):
        return _inspect_tokens(args.path, args.sentence, args.tokenizer, args.out)
    if args.json:
        print(json.dumps(summarise(sentence_shards(args.path)), indent=2))
    else:
        print(inspect_path(args.path))
    if args.sentence is not None:
        row = contact_sheet(args.path, args.sentence, args.out)
        print(f"contact sheet of {row['sentence_id']} ({row['num_images']} images) → {args.out}")
    return 0
