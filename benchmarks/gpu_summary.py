"""The GPU check's verdict: the issues' targets beside what gpu_check.sh measured.

Reads the JSON that benchmarks/decode.py and benchmarks/train_throughput.py wrote (--json) and
prints one line per target: #6, at least 55% MFU training GPT-2 350M (nanoGPT: 48.6% on an H200);
#7, at least 1,000 tokens/s decoding GPT-2 350M at batch 1 (nanoGPT: 14.7).

    python -m benchmarks.gpu_summary $OUT/decode.json $OUT/train_throughput.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MFU_TARGET = 0.55
DECODE_TARGET = 1000.0


def _load(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []


def _accum(row: dict) -> str:
    """The row's set-up beside its model and head: accumulation, and a kernel when one was forced."""
    kernel = row.get("attention", "torch")
    return f"grad_accum {row.get('grad_accum', 1)}" + ("" if kernel == "torch" else f", {kernel} attention")


def verdict(decode: list[dict], train: list[dict]) -> list[str]:
    lines = []
    medium = [r for r in train if r.get("name", "").startswith("gpt2-medium") and r.get("mfu") is not None]
    # MFU counts nanoGPT's FLOPs per token (the vocabulary projection at every position). Only the
    # full head does that work; the gathered head skips about half of the projection, so its "MFU"
    # would count FLOPs never run. The target is judged on the full head; the gathered head's
    # speed is shown beside it, as tokens/s (what a user gets) against the full head's.
    full = [r for r in medium if r.get("objective") == "full"]
    if full:
        best = max(full, key=lambda r: r["mfu"])
        ok = "met" if best["mfu"] >= MFU_TARGET else "NOT met"
        lines.append(
            f"#6 train 350M: MFU {100 * best['mfu']:.1f}% (full head, {_accum(best)}, "
            f"{best['tokens_per_sec']:,.0f} tokens/s) vs target {100 * MFU_TARGET:.0f}%: {ok}"
        )
        for r in medium:
            if r is not best:
                ratio = r["tokens_per_sec"] / best["tokens_per_sec"]
                lines.append(
                    f"   {r['objective']:<9} {_accum(r):<13} {r['tokens_per_sec']:,.0f} tokens/s ({ratio:.2f}x "
                    f"the best full head; {100 * r['mfu']:.1f}% counted at full-head FLOPs)"
                )
    elif medium:
        lines.append("#6 train 350M: no full-head figure to judge MFU on (see train_throughput.txt)")
    else:
        lines.append("#6 train 350M: no CUDA figure (see train_throughput.txt)")
    single = [r for r in decode if r.get("model") == "gpt2-medium" and r.get("batch") == 1]
    if single:
        best = max(single, key=lambda r: r["tokens_per_sec"])
        ok = "met" if best["tokens_per_sec"] >= DECODE_TARGET else "NOT met"
        lines.append(
            f"#7 decode 350M batch 1: best {best['tokens_per_sec']:,.0f} tokens/s ({best['decode']}) vs "
            f"target {DECODE_TARGET:,.0f}: {ok}"
        )
        lines += [f"   {r['decode']:<14} {r['tokens_per_sec']:,.0f} tokens/s" for r in single]
    else:
        lines.append("#7 decode 350M batch 1: no figure (see decode.txt)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print("\n".join(verdict(_load(Path(args[0])), _load(Path(args[1])))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
