"""``derf-zoo prepare-text``: tokenise text into nanoGPT's ``train.bin`` / ``val.bin`` (uint16) and ``meta.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from derf_zoo.commands._help import examples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-text", help="tokenise text files, a Hugging Face dataset or the embedded Shakespeare "
                       "into nanoGPT's train.bin/val.bin", **examples(
                           "derf-zoo prepare-text data/shakespeare_char --embedded shakespeare --tokenizer char",
                           "derf-zoo prepare-text data/mytext --files a.txt b.txt            # GPT-2 BPE",
                           "derf-zoo prepare-text data/openwebtext --dataset openwebtext     # nanoGPT's split"))
    p.add_argument("out", type=Path, help="folder to write train.bin, val.bin and meta.json into")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--files", nargs="+", type=Path, help="UTF-8 text files (concatenated; the last "
                        "--val-fraction of the characters validates)")  # fmt: skip
    source.add_argument("--dataset", help="a Hugging Face dataset (e.g. openwebtext: documents; a seeded split of "
                        "--val-fraction of them validates)")  # fmt: skip
    source.add_argument("--embedded", choices=["shakespeare"], help="the embedded Tiny Shakespeare")
    p.add_argument("--dataset-config", default=None, help="the dataset's configuration name")
    p.add_argument("--split", default="train", help="the dataset split to read (default: train)")
    p.add_argument("--text-column", default="text", help="the dataset's text column (default: text)")
    p.add_argument("--tokenizer", choices=["gpt2", "char"], default="gpt2",
                   help="gpt2: GPT-2's BPE (files from the Hub, cached); char: one id per character (default: gpt2)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share that validates (default 0.1; 0.0005 for --dataset, as nanoGPT's openwebtext)")
    p.add_argument("--seed", type=int, default=2357, help="seed of a dataset's document split (nanoGPT's 2357)")
    p.add_argument("--overwrite", action="store_true", help="replace bins that exist")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.data.text import prepare_text

    val_fraction = args.val_fraction if args.val_fraction is not None else (0.0005 if args.dataset else 0.1)
    try:
        meta = prepare_text(args.out, files=args.files or (), embedded=args.embedded, dataset=args.dataset,
                            dataset_config=args.dataset_config, split=args.split, text_column=args.text_column,
                            tokenizer=args.tokenizer, val_fraction=val_fraction, seed=args.seed,
                            overwrite=args.overwrite)  # fmt: skip
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"derf-zoo prepare-text: error: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: train.bin {meta['train_tokens']:,} tokens, val.bin {meta['val_tokens']:,} tokens, "
          f"{meta['tokenizer']} tokenizer ({meta['vocab_size']:,} ids); train with TextDataModule(data_dir="
          f"{str(args.out)!r}) and a model of vocab_size >= {meta['vocab_size']}.")  # fmt: skip
    return 0
