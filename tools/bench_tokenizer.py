#!/usr/bin/env python3
"""Qwen2 tokenizer speed: `ivl tokenize --bench` beside the Hugging Face `tokenizers` library.

Builds a mixed test text (English, Chinese, code, whitespace, emoji, multilingual, ChatML with the
InternVL2 tokens; about 10 MB by default, deterministic) from the shared assets and this
repository's sources, builds the HF tokenizer from the same vocab.json/merges.txt with the same
steps (NFC, Split with the Qwen2 regex, ByteLevel without regex, the 12 added tokens), checks that
it gives the same ids as ivl (whole text and line by line, and ivl on the HF-saved tokenizer.json),
then times both on one thread. Needs Python with `tokenizers`; the product does not. The code part
of the text comes from this checkout's sources, so the text (its sha256 is printed) is the same for
the same checkout; --keep saves it. Takes about four minutes, most of it in HF.

    python3 tools/bench_tokenizer.py [--ivl build/ivl] [--mb 10] [--repeat 3] [--keep corpus.txt]
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # single thread, before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
QWEN2 = SHARED / "assets" / "tokenizers" / "qwen2"
INTERNLM2 = SHARED / "assets" / "tokenizers" / "internlm2"
PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
         "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]


def byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def make_corpus(megabytes, seed=1234):
    """The mixed text and its bytes per kind. Shares by bytes: 35% English, 25% Chinese, 20% code,
    5% whitespace-heavy, 5% emoji, 10% numbers/math/multilingual/test strings/ChatML."""
    rng = random.Random(seed)
    tests = SHARED / "assets" / "tokenizer_tests"
    inp = (tests / "qwen2" / "ggml-vocab-qwen2.gguf.inp").read_text(encoding="utf-8")
    samples = [t for t in inp.split("\n__ggml_vocab_test__\n") if t]
    samples += [c["text"] for c in json.loads((tests / "qwen2" / "oracle_transformers_corpus.json").read_text())["cases"]]
    english = []
    for path in sorted(SHARED.glob("spec/*.md")) + [SHARED / "DESIGN.md", SHARED / "STYLE.md", ROOT / "README.md"]:
        english += [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    for path in sorted(SHARED.glob("assets/vqa/**/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            english += [str(v) for k, v in item.items() if k in ("question", "solution", "answer") and v]
    code = []
    for pattern in ("tensor/*.cpp", "nn/*.cpp", "llm/*.cpp", "mpo/*.cpp", "tools/*.py", "tools/*.sh", "tensor/cuda/*.cu"):
        for path in sorted(ROOT.glob(pattern)):
            code += [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    # Chinese: sentences of CJK tokens drawn from the vocabulary, frequent (low-id) tokens more often.
    decoder = byte_decoder()
    cjk = []
    for token, token_id in json.loads((QWEN2 / "vocab.json").read_text(encoding="utf-8")).items():
        try:
            text = bytes(decoder[c] for c in token).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            continue
        if text and all("\u4e00" <= ch <= "\u9fff" for ch in text):
            cjk.append((token_id, text))
    cjk = [t for _, t in sorted(cjk)]
    weights = [1.0 / (rank + 10) for rank in range(len(cjk))]
    punctuation = ["，", "，", "。", "、", "；", "：", "！", "？", "“", "”", "（", "）"]

    def chinese_paragraph():
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = rng.choices(cjk, weights, k=rng.randint(4, 18))
            sentences.append("".join(words) + rng.choice(punctuation))
        if rng.random() < 0.3:
            sentences.insert(rng.randrange(len(sentences)), f" InternVL2-{rng.choice(['1B', '2B', '8B'])} 在 MathVista 上 {rng.randint(10, 99)}.{rng.randint(0, 9)}% ")
        return "".join(sentences)

    emoji = ["😀", "😁", "🚀", "🦙", "✅", "🍺", "❤️", "👍🏽", "👨‍👩‍👧", "🇨🇳", "🇺🇸", "😶‍🌫️", "🎉", "🔥", "🤖", "📈", "🧠", "👀", "💡", "🌍"]

    def emoji_line():
        words = rng.choices(["ok", "nice", "lol", "great", "wow", "好", "看", "the model", "demo", ""], k=rng.randint(2, 8))
        return " ".join(w + "".join(rng.choices(emoji, k=rng.randint(0, 3))) for w in words)

    def whitespace_block():
        indent = rng.choice(["", "  ", "    ", "\t", "\t\t", "        "])
        lines = []
        for _ in range(rng.randint(2, 8)):
            lines.append(indent * rng.randint(0, 3) + rng.choice(["x = 1", "return y", "}", "", "- item", "| a | b |"]) + " " * rng.randint(0, 3))
        return "\n".join(lines) + "\n" * rng.randint(1, 4)

    def numbers_line():
        return rng.choice([
            lambda: f"{rng.randint(0, 10**9)} + {rng.random() * 1000:.4f} = {rng.randint(-500, 500)}, 0x{rng.randint(0, 2**32):x}",
            lambda: f"Final answer: ({rng.choice('ABCDE')}) \\boxed{{{rng.randint(1, 999)}}}",
            lambda: f"https://example.com/{rng.randint(1, 9999)}/page?id={rng.randint(1, 99)}&q=test",
            lambda: rng.choice(samples),
            lambda: f"<|im_start|>user\n<img>{'<IMG_CONTEXT>' * rng.randint(1, 8)}</img>\n{rng.choice(english)[:200]}<|im_end|>\n<|im_start|>assistant\n",
            lambda: rng.choice(["Ünïcödé àccents", "Ελληνικά κείμενο", "русский текст здесь", "العربية نص", "한국어 텍스트", "日本語のテキストです", "Tiếng Việt có dấu", "e\u0301 decomposed cafe\u0301"]),
        ])()

    # Each block comes from the kind furthest below its share of the bytes so far.
    makers = {
        "english": (0.35, lambda: rng.choice(english)),
        "chinese": (0.25, chinese_paragraph),
        "code": (0.20, lambda: rng.choice(code)),
        "whitespace": (0.05, whitespace_block),
        "emoji": (0.05, emoji_line),
        "numbers/math/multilingual/ChatML": (0.10, numbers_line),
    }
    target = int(megabytes * 1_000_000)
    totals = {name: 0 for name in makers}
    blocks, size = [], 0
    while size < target:
        name = max(makers, key=lambda k: makers[k][0] * (size + 1) - totals[k])
        block = makers[name][1]() + "\n"
        n = len(block.encode("utf-8"))
        totals[name] += n
        size += n
        blocks.append(block)
    return "".join(blocks), totals


def hf_tokenizer():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    tokenizer = Tokenizer(models.BPE.from_file(str(QWEN2 / "vocab.json"), str(QWEN2 / "merges.txt")))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED])
    assert tokenizer.token_to_id("<IMG_CONTEXT>") == 151648
    return tokenizer


def timed(function, repeat):
    """(result, first seconds, best seconds over `repeat` more runs)."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    best = first
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return result, first, best


def run_ivl(ivl, *args):
    out = subprocess.run([ivl, "tokenize", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"ivl tokenize {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ivl", default=str(ROOT / "build" / "ivl"))
    parser.add_argument("--mb", type=float, default=10.0, help="size of the test text in MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="also write the test text to this file")
    args = parser.parse_args()

    text, totals = make_corpus(args.mb)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # ivl splits on "\n" and gives no line after a final newline
    workdir = Path(tempfile.mkdtemp(prefix="ivl_tokbench_"))
    try:
        compare(args, text, totals, lines, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args, text, totals, lines, workdir):
    corpus = workdir / "corpus.txt"
    corpus.write_bytes(text.encode("utf-8"))
    if args.keep:
        Path(args.keep).write_bytes(text.encode("utf-8"))
    size = len(text.encode("utf-8"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    print(f"test text (sha256 {digest}...): {size} bytes, {len(lines)} lines; by bytes: " +
          ", ".join(f"{k} {100 * v / size:.0f}%" for k, v in totals.items()))

    hf = hf_tokenizer()
    # Same ids: the whole text, each line, and ivl reading the tokenizer.json that HF saves.
    hf_whole = hf.encode(text).ids
    ivl_whole = [int(x) for x in run_ivl(args.ivl, "--tokenizer", str(QWEN2), "--file", str(corpus)).split()]
    hf_lines = [e.ids for e in hf.encode_batch(lines)]
    ivl_lines = [json.loads(l) for l in run_ivl(args.ivl, "--tokenizer", str(QWEN2), "--file", str(corpus), "--json").splitlines()]
    json_dir = workdir / "hf_tokenizer_json"
    json_dir.mkdir()
    hf.save(str(json_dir / "tokenizer.json"))
    ivl_json_whole = [int(x) for x in run_ivl(args.ivl, "--tokenizer", str(json_dir), "--file", str(corpus)).split()]
    mismatched = sum(a != b for a, b in zip(hf_lines, ivl_lines)) + abs(len(hf_lines) - len(ivl_lines))
    print(f"same ids as HF: whole text {hf_whole == ivl_whole} ({len(hf_whole)} tokens), "
          f"lines {mismatched == 0} ({mismatched} of {len(hf_lines)} differ), "
          f"ivl on HF's tokenizer.json {ivl_json_whole == hf_whole}")
    if hf_whole != ivl_whole or mismatched or ivl_json_whole != hf_whole:
        sys.exit("ids differ: not timing")

    tokens = len(hf_whole)
    line_tokens = sum(len(ids) for ids in hf_lines)
    print(f"\nHF tokenizers {__import__('tokenizers').__version__}, one thread (RAYON_NUM_THREADS=1):")
    fresh = hf_tokenizer()
    _, first, best = timed(lambda: fresh.encode(text), args.repeat)
    print(f"  whole text, one encode():    first {first:.3f} s, best {best:.3f} s  -> {tokens / best:,.0f} tokens/s")
    fresh = hf_tokenizer()
    _, first, best = timed(lambda: [fresh.encode(l) for l in lines], args.repeat)
    print(f"  lines, encode() per line:    first {first:.3f} s, best {best:.3f} s  -> {line_tokens / best:,.0f} tokens/s")
    fresh = hf_tokenizer()
    _, first, best = timed(lambda: fresh.encode_batch(lines), args.repeat)
    print(f"  lines, one encode_batch():   first {first:.3f} s, best {best:.3f} s  -> {line_tokens / best:,.0f} tokens/s")

    print("\nivl (" + args.ivl + "):")
    print("  " + run_ivl(args.ivl, "--tokenizer", str(QWEN2), "--file", str(corpus), "--bench",
                         "--repeat", str(args.repeat)).replace("\n", "\n  ").rstrip())
    print("\nivl, InternLM2 SentencePiece on the same text (for reference; ids include BOS per line):")
    print("  " + run_ivl(args.ivl, "--tokenizer", str(INTERNLM2), "--file", str(corpus), "--bench",
                         "--repeat", str(args.repeat)).replace("\n", "\n  ").rstrip())


if __name__ == "__main__":
    main()
